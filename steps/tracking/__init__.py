"""Registry stage: MLflow logging, model registration and promotion; the variants' MLflow run."""

from steps.tracking.log_public_benchmarks import log_public_benchmarks
from steps.tracking.log_variants import log_variants
from steps.tracking.register_model import register_model

__all__ = ["log_public_benchmarks", "log_variants", "register_model"]

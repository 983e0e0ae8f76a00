"""Registry stage: MLflow logging, model registration and promotion; the variants' MLflow run."""

from steps.tracking.log_variants import log_variants
from steps.tracking.register_model import register_model

__all__ = ["log_variants", "register_model"]

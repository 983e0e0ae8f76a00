"""Registry stage: MLflow logging, model registration and promotion."""

from steps.tracking.register_model import register_model

__all__ = ["register_model"]

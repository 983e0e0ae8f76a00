"""Evaluation stage steps: score models on the benchmarks, compare base and trained."""

from steps.evaluation.compare_models import compare_models
from steps.evaluation.evaluate_model import evaluate_model

__all__ = ["compare_models", "evaluate_model"]

"""Evaluation stage steps: score models on the benchmarks (the registry's champion too), compare base and trained."""

from steps.evaluation.compare_models import compare_models
from steps.evaluation.evaluate_champion import evaluate_champion
from steps.evaluation.evaluate_model import evaluate_model

__all__ = ["compare_models", "evaluate_champion", "evaluate_model"]

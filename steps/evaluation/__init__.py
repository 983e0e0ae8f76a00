"""Evaluation stage steps: score models on the benchmarks (the registry's champion too), compare base and trained, and the variants' table."""

from steps.evaluation.compare_models import compare_models
from steps.evaluation.compare_variants import compare_variants
from steps.evaluation.evaluate_champion import evaluate_champion
from steps.evaluation.evaluate_model import evaluate_model
from steps.evaluation.score_public_benchmarks import score_checkpoint_public_benchmarks, score_public_benchmarks

__all__ = ["compare_models", "compare_variants", "evaluate_champion", "evaluate_model",
           "score_checkpoint_public_benchmarks", "score_public_benchmarks"]

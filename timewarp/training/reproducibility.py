"""What makes a training run repeat per seed across machines, as far as CPU arithmetic
allows: a fixed number of torch threads (a matmul's summation order follows the thread
count), deterministic algorithms where torch has them, and one seed for python, numpy
and torch before the model is built (data order and dropout follow the trainer's seed;
frame sampling is deterministic; tiny models are initialised from their own seed).

This module must not import zenml.
"""

from __future__ import annotations

from typing import Any

from timewarp.training.config import TrainingRecipe

__all__ = ["make_reproducible"]


def make_reproducible(recipe: TrainingRecipe) -> dict[str, Any]:
    """Apply ``recipe``'s thread count, determinism and seed to this process; what was set,
    for the run's record (``torch_threads`` is the count in effect either way)."""
    import torch
    from transformers import set_seed

    if recipe.torch_threads is not None:
        torch.set_num_threads(recipe.torch_threads)
    if recipe.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    set_seed(recipe.seed)
    return {
        "reproducibility/torch_threads": torch.get_num_threads(),
        "reproducibility/deterministic": float(torch.are_deterministic_algorithms_enabled()),
        "reproducibility/seed": recipe.seed,
    }

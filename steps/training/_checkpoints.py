"""What the training steps share: where they keep checkpoints, what they record about
their inputs, and how they run the training function."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from zenml import get_step_context


def input_versions() -> dict[str, str]:
    """Artifact name -> id of every input of the running step (for the model card)."""
    return {
        name: str(versions[0].id) for name, versions in get_step_context().inputs.items() if versions
    }


def checkpoint_dir(root: str, kind: str, recipe: dict[str, Any]) -> Path:
    """A folder that depends only on the inputs and the recipe, so a retried or restarted
    step finds the checkpoints of its earlier attempt and resumes from the newest."""
    key = json.dumps({"kind": kind, "inputs": input_versions(), "recipe": recipe}, sort_keys=True, default=str)
    return Path(root) / f"{kind.lower()}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def run_training_step(
    kind: str, train: Any, base_model: Any, recipe: Any, recipe_values: dict[str, Any], checkpoint_root: str, **data: Any
) -> Any:
    """Run ``train`` (``train_dpo`` / ``train_sft``) on ``base_model`` with ``data``, one
    process per GPU when the machine has several, resuming from this step's checkpoint
    folder; the trained model as a :class:`ModelCheckpoint`."""
    from timewarp.models.checkpoint import ModelCheckpoint
    from timewarp.models.registry import family_by_name
    from timewarp.training.launch import run_training

    versions = input_versions()
    result = run_training(
        train,
        model_path=base_model.path, recipe=recipe, output_dir=checkpoint_dir(checkpoint_root, kind, recipe_values),
        family=family_by_name(base_model.family), data_versions=versions, **data,
    )
    return ModelCheckpoint(
        path=str(result.output_dir), family=base_model.family, kind=kind, base_model=base_model.path,
        adapter=recipe.lora is not None, history=result.history, final_metrics=result.final_metrics,
        data_versions=versions, resumed_from=result.resumed_from, recipe=recipe_values,
    )

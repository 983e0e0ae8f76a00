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


def training_source(base_model: Any, artifact_id: str | None, checkpoint_root: str) -> str:
    """What training loads: the model's folder or hub id; an adapter (LoRA SFT before LoRA
    DPO) is first merged into its base, once per artifact, under ``checkpoint_root``."""
    if not base_model.adapter:
        return base_model.path
    return str(base_model.save_merged(Path(checkpoint_root) / f"merged-{artifact_id}"))


def run_training_step(
    kind: str,
    train: Any,
    base_model: Any,
    recipe: Any,
    recipe_values: dict[str, Any],
    checkpoint_root: str,
    base_input: str = "base_model",
    **data: Any,
) -> Any:
    """Run ``train`` (``train_dpo`` / ``train_sft``) on ``base_model`` (the step input named
    ``base_input``) with ``data``, one process per GPU when the machine has several (or as
    many as the recipe's ``num_processes`` / ``TIMEWARP_NPROC`` ask), resuming
    from this step's checkpoint folder; the trained model as a :class:`ModelCheckpoint` that
    names its base by hub id or, for one of our models, by artifact version (never by the
    local folder it was loaded from here)."""
    from timewarp.models.checkpoint import ModelCheckpoint
    from timewarp.models.registry import family_by_name
    from timewarp.training.launch import run_training

    versions = input_versions()
    parent_artifact = versions.get(base_input) if base_model.stored else None
    base_name = f"zenml:{parent_artifact}" if parent_artifact else base_model.path
    result = run_training(
        train,
        model_path=training_source(base_model, parent_artifact, checkpoint_root), recipe=recipe,
        output_dir=checkpoint_dir(checkpoint_root, kind, recipe_values),
        family=family_by_name(base_model.family), data_versions=versions, base_model_name=base_name, **data,
    )
    return ModelCheckpoint(
        path=str(result.output_dir), family=base_model.family, kind=kind,
        base_model=base_name,
        adapter=recipe.lora is not None, history=result.history, final_metrics=result.final_metrics,
        data_versions=versions, resumed_from=result.resumed_from, recipe=recipe_values,
        parent_artifact=parent_artifact, parent=base_model if parent_artifact else None,
    )

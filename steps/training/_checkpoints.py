"""Where a training step keeps its checkpoints, and what it records about its inputs."""

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

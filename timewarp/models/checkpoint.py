"""A model as it travels between steps: a folder (or a hub id) plus what it is."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CARD = "checkpoint.json"


@dataclass
class ModelCheckpoint:
    """``path`` is a folder loadable with ``from_pretrained`` (weights or a LoRA adapter
    plus the processor) or, for external base models, a hub id that is not copied."""

    path: str
    family: str
    kind: str  # base | SFT | DPO | SFT-cont (the continued-SFT control)
    base_model: str | None = None  # what an adapter applies to (hub id or folder)
    adapter: bool = False
    stored: bool = True  # False: ``path`` is a hub id / external location, not a folder we own
    history: list[dict[str, float]] = field(default_factory=list)
    final_metrics: dict[str, float] = field(default_factory=dict)
    data_versions: dict[str, str] = field(default_factory=dict)
    resumed_from: str | None = None  # the checkpoint a retried training step continued from
    recipe: dict[str, Any] = field(default_factory=dict)

    def load(self) -> tuple[Any, Any, Any]:
        """(model, processor, family) ready for inference; adapters applied to their base."""
        from timewarp.models.registry import family_by_name

        family = family_by_name(self.family)
        if not self.adapter:
            model, processor = family.load(self.path)
            return model, processor, family
        from peft import PeftModel

        # Training does not change the processor: the base model's serves the adapter.
        base, processor = family.load(self.base_model)
        return PeftModel.from_pretrained(base, self.path), processor, family

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("history",)}

    def write_card(self, folder: str | Path) -> None:
        (Path(folder) / CARD).write_text(json.dumps(asdict(self), indent=1, default=str))

    @classmethod
    def read_card(cls, folder: str | Path) -> "ModelCheckpoint":
        return cls(**json.loads((Path(folder) / CARD).read_text()))

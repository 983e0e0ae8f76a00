"""A model as it travels between steps: a folder (or a hub id) plus what it is."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from timewarp.models.placement import Placement, choose_placement

CARD = "checkpoint.json"
#: Written last into a merged folder (:meth:`ModelCheckpoint.save_merged`): the folder is whole.
MERGED_MARKER = "merged.json"
#: What a training output folder holds besides the model: the Trainer's ``checkpoint-N``
#: folders and its optimizer, scheduler, RNG and loop state. Only resuming reads them, from
#: the local output folder; the model's artifact and its served copy leave them out.
TRAINING_STATE = (
    "checkpoint-*", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth", "trainer_state.json",
    "training_args.bin",
)

#: The per-step training log a training run writes into its output folder (a record that
#: inference does not read).
TRAINING_LOG = "training_log.json"


def is_training_state(name: str) -> bool:
    """Whether a file or folder name in a model folder is training state (:data:`TRAINING_STATE`)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in TRAINING_STATE)


@dataclass
class ModelCheckpoint:
    """``path`` is a folder loadable with ``from_pretrained`` (weights or a LoRA adapter
    plus the processor) or, for external base models, a hub id that is not copied.

    A model trained from one of our own models keeps that model as ``parent`` (and its
    artifact version id as ``parent_artifact``, by which the materializer finds it again in
    any process): an adapter is applied to its parent with the parent's own adapters merged,
    so LoRA on LoRA loads anywhere the artifact store can be read, never from a local path.
    """

    path: str
    family: str
    kind: str  # base | SFT | DPO | SFT-cont (the continued-SFT control)
    # What it was trained from: a hub id / external path, or ``zenml:<artifact version id>``.
    base_model: str | None = None
    adapter: bool = False
    stored: bool = True  # False: ``path`` is a hub id / external location, not a folder we own
    history: list[dict[str, float]] = field(default_factory=list)
    final_metrics: dict[str, float] = field(default_factory=dict)
    data_versions: dict[str, str] = field(default_factory=dict)
    resumed_from: str | None = None  # the checkpoint a retried training step continued from
    recipe: dict[str, Any] = field(default_factory=dict)
    parent_artifact: str | None = None
    parent: ModelCheckpoint | None = field(default=None, repr=False, compare=False)  # not serialised

    def load(self, *, device: str | None = None, dtype: str | None = None) -> tuple[Any, Any, Any]:
        """(model, processor, family) ready for inference; adapters applied to their base.

        Placed by :func:`~timewarp.models.placement.choose_placement`: weights load straight
        onto this process's GPU when there is one, in bfloat16 when the recipe trained in it
        (a base model has no recipe: the recipes' default, bf16) and the GPU supports it,
        else in float32 (always on the CPU). ``device`` and ``dtype`` (a name of
        :data:`~timewarp.models.placement.DTYPES`) override the choice."""
        from timewarp.models.registry import family_by_name

        family = family_by_name(self.family)
        placement = choose_placement(device=device, dtype=dtype, bf16=bool(self.recipe.get("bf16", True)))
        if not self.adapter:
            model, processor = family.load(self.path, dtype=placement.torch_dtype, device_map=placement.device_map)
            return model, processor, family
        from peft import PeftModel

        # Training does not change the processor: the base model's serves the adapter.
        # PeftModel puts the adapter weights on the device of the layers they adapt.
        base, processor = self._load_base(family, placement)
        return PeftModel.from_pretrained(base, self.path), processor, family

    def _load_base(self, family: Any, placement: Placement) -> tuple[Any, Any]:
        """The model this adapter applies to, at ``placement``: the parent with its adapters
        merged, or the external base model."""
        if self.parent is not None:
            model, processor, _ = self.parent.load_merged(device=placement.device, dtype=placement.dtype)
            return model, processor
        if not self.base_model or self.base_model.startswith("zenml:"):
            raise ValueError(
                f"the {self.kind} adapter at {self.path} applies to {self.base_model or 'an unrecorded model'}: "
                "load it through its ZenML artifact (`artifact.load()`), which resolves its parent model"
            )
        return family.load(self.base_model, dtype=placement.torch_dtype, device_map=placement.device_map)

    def load_merged(self, *, device: str | None = None, dtype: str | None = None) -> tuple[Any, Any, Any]:
        """As :meth:`load`, with adapters merged into the weights (a plain transformers model)."""
        model, processor, family = self.load(device=device, dtype=dtype)
        if self.adapter:
            model = model.merge_and_unload()
        return model, processor, family

    def save_merged(self, folder: str | Path) -> Path:
        """Write the merged model and its processor to ``folder`` (a plain checkpoint that
        training loads like any base model). Written aside and renamed, with a marker, so a
        process killed half-way leaves no folder that looks whole; reused when complete."""
        folder = Path(folder)
        if (folder / MERGED_MARKER).is_file():
            return folder
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        model, processor, _ = self.load_merged()
        model.save_pretrained(str(partial))
        processor.save_pretrained(str(partial))
        (partial / MERGED_MARKER).write_text(json.dumps({"from": self.describe()}, default=str))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)
        return folder

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_dict().items() if k not in ("history",)}

    def to_dict(self) -> dict[str, Any]:
        """Every field but the in-memory ``parent`` (found again by ``parent_artifact``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "parent"}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelCheckpoint:
        return cls(**{k: v for k, v in values.items() if k != "parent"})

    def write_card(self, folder: str | Path) -> None:
        (Path(folder) / CARD).write_text(json.dumps(self.to_dict(), indent=1, default=str))

    @classmethod
    def read_card(cls, folder: str | Path) -> ModelCheckpoint:
        return cls.from_dict(json.loads((Path(folder) / CARD).read_text()))

"""What DPO and SFT training share: a run's start and end, loading, LoRA set-up, the
projector's learning rate, the training log and the model card (checkpoints:
:mod:`timewarp.training.checkpoints`).

This module must not import zenml.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from timewarp.data.corpus import VideoCorpus
from timewarp.models.base import VideoLLMFamily
from timewarp.models.checkpoint import TRAINING_LOG
from timewarp.training.checkpoints import last_complete_checkpoint, run_fingerprint
from timewarp.training.collator import FrameSource
from timewarp.training.config import TrainingRecipe
from timewarp.training.reproducibility import make_reproducible

__all__ = [
    "ProjectorLearningRateMixin",
    "TrainingResult",
    "TrainingStart",
    "configure_trainable",
    "finish_training",
    "load_for_training",
    "lora_config",
    "projector_module_names",
    "start_training",
    "train_and_finish",
    "training_device",
    "write_model_card",
    "write_training_log",
]

logger = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    """Where a run wrote its model and what it logged."""

    output_dir: Path
    base_model: str
    recipe: TrainingRecipe
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per logging step
    final_metrics: dict[str, float] = field(default_factory=dict)  # train runtime, mean loss, ...
    resumed_from: str | None = None  # checkpoint folder the run continued from


@dataclass
class TrainingStart:
    """What :func:`start_training` checked and loaded for a run."""

    output_dir: Path
    family: VideoLLMFamily
    run: dict[str, Any]  # the run's fingerprint (checkpoints.run_fingerprint)
    checkpoint: str | None  # the checkpoint to resume from
    model: Any
    processor: Any
    collator: Any
    # What the run records beside the trainer's metrics (model card, final metrics): the
    # reproducibility settings in effect, and what the trainer adds (validation split, early stop).
    record: dict[str, float] = field(default_factory=dict)


# -- start and end of a run ---------------------------------------------------------------


def start_training(
    model_path: str | Path,
    family: VideoLLMFamily | None,
    recipe: TrainingRecipe,
    output_dir: str | Path,
    corpus: VideoCorpus,
    collator_class: Any,
    *,
    resume: bool,
    examples: list[Any],
    what: str,
) -> TrainingStart:
    """Check the run (``examples``, named ``what`` in the error, must not be empty), find
    the checkpoint to resume from, load the model and build ``collator_class`` on it."""
    from timewarp.models.registry import family_for

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    family = family or family_for(str(model_path))
    if not examples:
        raise ValueError(f"no {what} to train on")
    # Before anything is loaded or written: a folder of another run fails here, untouched.
    run = run_fingerprint(model_path, family.name, recipe)
    checkpoint = last_complete_checkpoint(output_dir, run) if resume else None
    record = make_reproducible(recipe)
    model, processor = load_for_training(family, str(model_path), recipe)
    collator = collator_class(
        family, processor, FrameSource(corpus, recipe.frames_per_video), max_length=recipe.max_length
    )
    return TrainingStart(output_dir, family, run, checkpoint, model, processor, collator, record)


def train_and_finish(
    trainer: Any,
    start: TrainingStart,
    recipe: TrainingRecipe,
    base_model: str,
    data_versions: dict[str, Any] | None,
    kind: str,
) -> TrainingResult:
    """Train (resuming from ``start.checkpoint``), then save the outputs (:func:`finish_training`)."""
    trainer.run_fingerprint = start.run
    if start.checkpoint:
        logger.info("resuming %s from %s", kind, start.checkpoint)
    trainer.train(resume_from_checkpoint=start.checkpoint)
    return finish_training(
        trainer, start.processor, start.family, base_model, recipe, start.output_dir, data_versions,
        start.checkpoint, kind, record=start.record,
    )


# -- model ----------------------------------------------------------------------------------


def load_for_training(family: VideoLLMFamily, model_path: str, recipe: TrainingRecipe) -> tuple[Any, Any]:
    """(model, processor) in the recipe's precision (bf16 on GPU recipes, fp32 otherwise).
    With a ZeRO-3 DeepSpeed recipe each process loads only its partition of the weights."""
    import torch

    from timewarp.training.zero import partitioned_loading

    with partitioned_loading(recipe):
        model, processor = family.load(str(model_path), dtype=torch.bfloat16 if recipe.bf16 else torch.float32)
    return model, processor


def training_device(recipe: TrainingRecipe) -> Any:
    """The device this process trains on: its GPU (``LOCAL_RANK`` under a launcher) unless
    the recipe asks for the CPU or there is none (the rule of :mod:`timewarp.models.placement`)."""
    import torch

    from timewarp.models.placement import MachineFacts, choose_device

    return torch.device(choose_device(MachineFacts.probe(), use_cpu=recipe.use_cpu))


def projector_module_names(family: VideoLLMFamily, model: Any) -> list[str]:
    """Full names of the multimodal projector's callable modules (a ModuleList is expanded
    to its items, since PEFT wraps modules that are called)."""
    import torch

    wanted = set(family.projector_modules)
    names: list[str] = []
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] not in wanted:
            continue
        if isinstance(module, torch.nn.ModuleList):
            names.extend(f"{name}.{child}" for child, _ in module.named_children())
        else:
            names.append(name)
    return names


def _is_under(name: str, prefixes: list[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def configure_trainable(family: VideoLLMFamily, model: Any, recipe: TrainingRecipe) -> None:
    """Full fine-tuning: freeze the vision encoder but not the projector (as LLaVA-style
    recipes do) unless ``recipe.train_vision_tower``. With LoRA, PEFT decides (adapters +
    ``modules_to_save``)."""
    if recipe.lora is not None:
        return
    # Towers the family never feeds (Video-LLaVA's image tower for video input) get no
    # gradients; freezing them spares their optimizer state.
    for name, parameter in model.named_parameters():
        if any(f".{module}." in f".{name}" for module in family.unused_modules):
            parameter.requires_grad_(False)
    if recipe.train_vision_tower:
        return
    tower = family.vision_tower_module
    projector = projector_module_names(family, model)
    for name, parameter in model.named_parameters():
        in_tower = f".{tower}." in f".{name}"
        if in_tower and not _is_under(name, projector):
            parameter.requires_grad_(False)


def lora_config(family: VideoLLMFamily, model: Any, recipe: TrainingRecipe) -> Any:
    """PEFT ``LoraConfig`` for ``recipe.lora``: targets restricted to the family's language
    model (a regex, so same-named vision projections are left alone); the projector is
    trained in full (``modules_to_save``) when it has its own learning rate."""
    from peft import LoraConfig

    assert recipe.lora is not None
    names = "|".join(re.escape(name) for name in recipe.lora.target_modules)
    targets = rf".*\b{re.escape(family.language_model_module)}\..*\.(?:{names})"
    to_save = projector_module_names(family, model) if recipe.projector_learning_rate is not None else None
    return LoraConfig(
        r=recipe.lora.r,
        lora_alpha=recipe.lora.alpha,
        lora_dropout=recipe.lora.dropout,
        bias=recipe.lora.bias,
        target_modules=targets,
        modules_to_save=to_save or None,
        task_type="CAUSAL_LM",
    )


class ProjectorLearningRateMixin:
    """Trainer mixin: the projector's parameters get their own optimizer group and learning
    rate (the LR scheduler scales every group alike). Set ``projector_learning_rate`` and
    ``projector_names`` (module name prefixes) before training starts."""

    projector_learning_rate: float | None = None
    projector_names: tuple[str, ...] = ()

    def _is_projector_parameter(self, name: str) -> bool:
        # PEFT prefixes names ("base_model.model.") and wraps saved modules
        # ("merger.modules_to_save.default."): match on the module path anywhere in the name.
        return any(f".{prefix}." in f".{name}" for prefix in self.projector_names)

    def create_optimizer(self, model: Any = None) -> Any:
        if self.optimizer is not None or self.projector_learning_rate is None or not self.projector_names:
            return super().create_optimizer(model)  # type: ignore[misc]
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        groups: dict[tuple[bool, bool], list[Any]] = {}
        for name, parameter in opt_model.named_parameters():
            if parameter.requires_grad:
                groups.setdefault((self._is_projector_parameter(name), name in decay), []).append(parameter)
        param_groups = []
        for (is_projector, decays), params in sorted(groups.items()):
            group: dict[str, Any] = {"params": params, "weight_decay": self.args.weight_decay if decays else 0.0}
            if is_projector:
                group["lr"] = self.projector_learning_rate
            param_groups.append(group)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
        return self.optimizer


# -- outputs -------------------------------------------------------------------------------


def write_training_log(output_dir: str | Path, log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-step training entries of ``log_history`` (those with a ``loss``) as
    ``training_log.json``; returns them."""
    entries = [dict(entry) for entry in log_history if "loss" in entry and "train_runtime" not in entry]
    (Path(output_dir) / TRAINING_LOG).write_text(json.dumps(entries, indent=2))
    return entries


def final_metrics(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """The trainer's end-of-training summary plus the last logged value of each metric."""
    metrics: dict[str, float] = {}
    for entry in log_history:
        if "loss" in entry:
            metrics.update({key: value for key, value in entry.items() if key not in ("step", "epoch")})
        if "train_runtime" in entry:
            metrics.update(entry)
    return metrics


def write_model_card(
    output_dir: str | Path,
    *,
    kind: str,
    base_model: str,
    family: str,
    recipe: TrainingRecipe,
    data_versions: dict[str, Any] | None,
    metrics: dict[str, Any],
    adapter: bool,
) -> Path:
    """``README.md``: what was trained from what, with which recipe and data."""
    import yaml

    versions = data_versions or {}
    lines = [
        "---",
        yaml.safe_dump(
            {
                "base_model": base_model,
                "library_name": "peft" if adapter else "transformers",
                "tags": ["timewarp", kind.lower(), "video-llm"],
            },
            sort_keys=False,
        ).rstrip(),
        "---",
        "",
        f"# TimeWarp {kind}: {Path(str(base_model)).name}",
        "",
        f"- Base model: `{base_model}` (family `{family}`)",
        f"- Weights: {'LoRA adapter' if adapter else 'full weights'} in this folder, with the processor",
        f"- Method: {kind} on synthetic temporal data (TimeWarp)",
        "",
        "## Data",
        "",
    ]
    lines += [f"- {name}: `{version}`" for name, version in versions.items()] or ["- (not recorded)"]
    lines += ["", "## Recipe", "", "```yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False).rstrip(), "```", ""]
    lines += ["## Final metrics", "", "```json", json.dumps(metrics, indent=2, default=str), "```", ""]
    path = Path(output_dir) / "README.md"
    path.write_text("\n".join(lines))
    return path


def finish_training(
    trainer: Any,
    processor: Any,
    family: VideoLLMFamily,
    base_model: str,
    recipe: Any,
    output_dir: Path,
    data_versions: dict[str, Any] | None,
    checkpoint: str | None,
    kind: str,
    record: dict[str, float] | None = None,
) -> TrainingResult:
    """Save weights, processor, log and model card (main process only); the result.
    ``record`` joins the final metrics."""
    trainer.save_model(str(output_dir))
    history = trainer.state.log_history
    metrics = {**final_metrics(history), **(record or {})}
    entries = [entry for entry in history if "loss" in entry and "train_runtime" not in entry]
    if trainer.is_world_process_zero():
        processor.save_pretrained(str(output_dir))
        entries = write_training_log(output_dir, history)
        write_model_card(
            output_dir,
            kind=kind,
            base_model=base_model,
            family=family.name,
            recipe=recipe,
            data_versions=data_versions,
            metrics=metrics,
            adapter=recipe.lora is not None,
        )
    return TrainingResult(
        output_dir=output_dir,
        base_model=base_model,
        recipe=recipe,
        history=entries,
        final_metrics=metrics,
        resumed_from=checkpoint,
    )

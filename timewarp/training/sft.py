"""Supervised fine-tuning on (video, question, answer) with TRL's SFTTrainer.

The loss covers the answer tokens only. With ``recipe.validation_fraction`` whole training
videos are held out (:mod:`timewarp.training.validation`) and the validation loss is measured
after every epoch; with ``recipe.early_stopping_patience`` transformers' EarlyStoppingCallback
stops at the plateau and the best epoch's weights are kept. The split's size, the best and
the last epoch are recorded in the final metrics and the model card (``validation/*``).
Rows stay untokenised (``skip_prepare_dataset``);
:class:`~timewarp.training.collator.VideoSFTCollator` builds ``labels`` and the video
tensors per batch. Checkpoints, resuming and outputs as for :func:`~timewarp.training.dpo.train_dpo`.

This module must not import zenml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import EarlyStoppingCallback, TrainerCallback
from trl import SFTTrainer

from timewarp.data.corpus import VideoCorpus
from timewarp.generation.datasets import SFTDataset
from timewarp.models.base import VideoLLMFamily
from timewarp.training.collator import VideoSFTCollator, sft_rows
from timewarp.training.checkpoints import ResumableCheckpointsMixin
from timewarp.training.common import (
    ProjectorLearningRateMixin,
    TrainingResult,
    configure_trainable,
    lora_config,
    projector_module_names,
    start_training,
    train_and_finish,
)
from timewarp.training.config import SFTRecipe
from timewarp.training.validation import validation_split

__all__ = ["ValidationRecordCallback", "VideoSFTTrainer", "train_sft"]


class VideoSFTTrainer(ResumableCheckpointsMixin, ProjectorLearningRateMixin, SFTTrainer):
    """SFTTrainer with a separate learning rate for the multimodal projector."""


class ValidationRecordCallback(TrainerCallback):
    """At the end of training, writes into ``record`` the validation losses' outcome: the
    best validation loss and its epoch, the epoch training stopped at, and whether early
    stopping ended it before ``num_train_epochs``."""

    def __init__(self, record: dict[str, float]) -> None:
        self.record = record

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        evaluations = [entry for entry in state.log_history if "eval_loss" in entry]
        if not evaluations:
            return
        best = min(evaluations, key=lambda entry: entry["eval_loss"])
        self.record.update({
            "validation/best_eval_loss": float(best["eval_loss"]),
            "validation/best_epoch": float(best["epoch"]),
            "validation/last_eval_loss": float(evaluations[-1]["eval_loss"]),
            "validation/stopped_epoch": float(state.epoch),
            "validation/stopped_early": float(state.global_step < state.max_steps),
        })


def train_sft(
    model_path: str | Path,
    examples: SFTDataset,
    corpus: VideoCorpus,
    recipe: SFTRecipe,
    output_dir: str | Path,
    *,
    resume: bool = True,
    family: VideoLLMFamily | None = None,
    data_versions: dict[str, Any] | None = None,
    base_model_name: str | None = None,
    callbacks: list[Any] | None = None,
) -> TrainingResult:
    """Fine-tune ``model_path`` on ``examples`` (frames from ``corpus``); arguments as for
    :func:`~timewarp.training.dpo.train_dpo`."""
    from datasets import Dataset

    start = start_training(
        model_path, family, recipe, output_dir, corpus, VideoSFTCollator,
        resume=resume, examples=examples.pairs, what="SFT examples",
    )
    family, model = start.family, start.model
    configure_trainable(family, model, recipe)
    rows, validation_rows = sft_rows(examples), None
    callbacks = list(callbacks or [])
    if recipe.validation_fraction > 0:
        split = validation_split(rows, recipe.validation_fraction, recipe.seed)
        rows, validation_rows = split.train, Dataset.from_list(split.validation)
        start.record.update(split.sizes())
        start.record["validation/fraction"] = recipe.validation_fraction
        callbacks.append(ValidationRecordCallback(start.record))
    if recipe.early_stopping_patience is not None:
        start.record["validation/early_stopping_patience"] = recipe.early_stopping_patience
        start.record["validation/early_stopping_threshold"] = recipe.early_stopping_threshold
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=recipe.early_stopping_patience,
                                               early_stopping_threshold=recipe.early_stopping_threshold))
    trainer = VideoSFTTrainer(
        model=model,
        args=recipe.to_trl(start.output_dir),
        train_dataset=Dataset.from_list(rows),
        eval_dataset=validation_rows,
        processing_class=start.processor,
        data_collator=start.collator,
        peft_config=lora_config(family, model, recipe) if recipe.lora is not None else None,
        callbacks=callbacks,
    )
    trainer.projector_learning_rate = recipe.projector_learning_rate
    trainer.projector_names = tuple(projector_module_names(family, model))
    return train_and_finish(trainer, start, recipe, base_model_name or str(model_path), data_versions, "SFT")

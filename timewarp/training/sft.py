"""Supervised fine-tuning on (video, question, answer) with TRL's SFTTrainer.

The loss covers the answer tokens only. Rows stay untokenised (``skip_prepare_dataset``);
:class:`~timewarp.training.collator.VideoSFTCollator` builds ``labels`` and the video
tensors per batch. Checkpoints, resuming and outputs as for :func:`~timewarp.training.dpo.train_dpo`.

This module must not import zenml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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

__all__ = ["VideoSFTTrainer", "train_sft"]


class VideoSFTTrainer(ResumableCheckpointsMixin, ProjectorLearningRateMixin, SFTTrainer):
    """SFTTrainer with a separate learning rate for the multimodal projector."""


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
    trainer = VideoSFTTrainer(
        model=model,
        args=recipe.to_trl(start.output_dir),
        train_dataset=Dataset.from_list(sft_rows(examples)),
        processing_class=start.processor,
        data_collator=start.collator,
        peft_config=lora_config(family, model, recipe) if recipe.lora is not None else None,
        callbacks=callbacks,
    )
    trainer.projector_learning_rate = recipe.projector_learning_rate
    trainer.projector_names = tuple(projector_module_names(family, model))
    return train_and_finish(trainer, start, recipe, base_model_name or str(model_path), data_versions, "SFT")

"""Supervised fine-tuning on (video, question, answer) with TRL's SFTTrainer.

The loss covers the answer tokens only. Rows stay untokenised (``skip_prepare_dataset``);
:class:`~timewarp.training.collator.VideoSFTCollator` builds ``labels`` and the video
tensors per batch. Checkpoints, resuming and outputs as for :func:`~timewarp.training.dpo.train_dpo`.

This module must not import zenml.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from trl import SFTTrainer

from timewarp.corpus import VideoCorpus
from timewarp.generation.datasets import SFTDataset
from timewarp.models.base import VideoLLMFamily
from timewarp.training.collator import FrameSource, VideoSFTCollator, sft_rows
from timewarp.training.checkpoints import ResumableCheckpointsMixin, last_complete_checkpoint, run_fingerprint
from timewarp.training.common import (
    ProjectorLearningRateMixin,
    TrainingResult,
    configure_trainable,
    finish_training,
    load_for_training,
    lora_config,
    projector_module_names,
)
from timewarp.training.config import SFTRecipe

__all__ = ["VideoSFTTrainer", "train_sft"]

logger = logging.getLogger(__name__)


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

    from timewarp.models.registry import family_for

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    family = family or family_for(str(model_path))
    if not examples.pairs:
        raise ValueError("no SFT examples to train on")
    # Before anything is loaded or written: a folder of another run fails here, untouched.
    run = run_fingerprint(model_path, family.name, recipe)
    checkpoint = last_complete_checkpoint(output_dir, run) if resume else None
    model, processor = load_for_training(family, str(model_path), recipe)
    collator = VideoSFTCollator(
        family, processor, FrameSource(corpus, recipe.frames_per_video), max_length=recipe.max_length
    )
    configure_trainable(family, model, recipe)
    trainer = VideoSFTTrainer(
        model=model,
        args=recipe.to_trl(output_dir),
        train_dataset=Dataset.from_list(sft_rows(examples)),
        processing_class=processor,
        data_collator=collator,
        peft_config=lora_config(family, model, recipe) if recipe.lora is not None else None,
        callbacks=callbacks,
    )
    trainer.projector_learning_rate = recipe.projector_learning_rate
    trainer.projector_names = tuple(projector_module_names(family, model))
    trainer.run_fingerprint = run
    if checkpoint:
        logger.info("resuming SFT from %s", checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    return finish_training(
        trainer, processor, family, base_model_name or str(model_path), recipe, output_dir, data_versions,
        checkpoint, "SFT",
    )

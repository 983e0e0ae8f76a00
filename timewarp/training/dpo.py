"""DPO on video preference pairs with TRL's DPOTrainer.

:func:`train_dpo` loads the base model through its family adapter, computes the reference
log-probabilities once (:mod:`timewarp.training.reference`), then trains with
:class:`VideoDPOTrainer`, a small DPOTrainer subclass that

- leaves the rows untokenised (our collator encodes text and video per batch),
- reads the stored reference log-probs from each batch instead of running a reference
  model (TRL's own ``precompute_ref_log_probs`` refuses vision data), and
- gives the multimodal projector its own learning rate.

Checkpoints go to ``output_dir/checkpoint-N`` every ``save_steps``; a later call with the
same ``output_dir`` resumes from the newest complete one (see
:mod:`timewarp.training.checkpoints`). The folder ends with the adapter (or full weights),
the processor, ``README.md`` and ``training_log.json``.

This module must not import zenml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trl import DPOTrainer

from timewarp.data.corpus import VideoCorpus
from timewarp.generation.datasets import PreferenceDataset
from timewarp.models.base import VideoLLMFamily
from timewarp.training.collator import VideoPreferenceCollator, preference_rows
from timewarp.training.checkpoints import ResumableCheckpointsMixin
from timewarp.training.common import (
    ProjectorLearningRateMixin,
    TrainingResult,
    configure_trainable,
    load_for_training,
    lora_config,
    projector_module_names,
    start_training,
    train_and_finish,
    training_device,
)
from timewarp.training.config import DPORecipe
from timewarp.training.reference import (
    gather_reference_logps,
    has_reference_logps,
    load_reference_logps,
    save_reference_logps,
    with_reference_logps,
)
from timewarp.training.zero import is_partitioned, partitioned_forward

__all__ = ["REFERENCE_FILE", "VideoDPOTrainer", "build_dpo_trainer", "train_dpo"]

#: Reference log-probs kept in the output folder so a resumed run does not recompute them.
REFERENCE_FILE = "reference_logps.json"


class VideoDPOTrainer(ResumableCheckpointsMixin, ProjectorLearningRateMixin, DPOTrainer):
    """DPOTrainer for rows of (video id, prompt, chosen, rejected) encoded by our collator.

    Rows must not have an ``image``/``images`` column (TRL would treat them as vision data
    and refuse stored reference log-probs); with ``precompute_ref_log_probs`` they must carry
    ``ref_chosen_logps``/``ref_rejected_logps``, which the collator puts into each batch and
    ``DPOTrainer._compute_loss`` reads from there.
    """

    def __init__(self, model: Any, ref_model: Any = None, args: Any = None, **kwargs: Any) -> None:
        precompute = bool(args is not None and args.precompute_ref_log_probs)
        if precompute:  # fail before TRL wraps the model
            self._precompute_ref_logps(kwargs.get("train_dataset"), "train", 0)
        # With LoRA the reference is the adapter-free model, so TRL has no reference model to
        # spare; telling it about the stored values only costs a hash of every weight (about a
        # minute for 7B parameters). Switch them on after TRL's set-up instead.
        late = precompute and kwargs.get("peft_config") is not None
        if late:
            args.precompute_ref_log_probs = False
        try:
            super().__init__(model, ref_model, args, **kwargs)
        finally:
            if late:
                args.precompute_ref_log_probs = True
        if late:
            self.precompute_ref_logps = True  # what DPOTrainer._compute_loss checks
            self.train_dataset = self._precompute_ref_logps(self.train_dataset, "train", 0)

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        # Tokenisation and video processing happen per batch in the collator.
        return dataset

    def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
        if dataset is None or not has_reference_logps(dataset):
            raise ValueError(
                f"the {name} rows lack ref_chosen_logps/ref_rejected_logps: compute them with "
                "timewarp.training.reference.compute_reference_logps before building the trainer"
            )
        return dataset


def _reference_key(run: dict[str, Any], recipe: DPORecipe, family: VideoLLMFamily) -> dict[str, Any]:
    # The reference model by the digest of its weights when it is a local folder: a pod that
    # loads the same base from the artifact store into another folder reuses the values.
    return {
        "model": run["base_weights"] or run["base_model"],
        "family": family.name,
        "frames_per_video": recipe.frames_per_video,
        "max_length": recipe.max_length,
        "bf16": recipe.bf16,
    }


def build_dpo_trainer(
    model: Any,
    processor: Any,
    family: VideoLLMFamily,
    rows: list[dict[str, Any]],
    collator: VideoPreferenceCollator,
    recipe: DPORecipe,
    output_dir: str | Path,
    *,
    ref_model: Any = None,
    callbacks: list[Any] | None = None,
) -> VideoDPOTrainer:
    """The trainer for prepared rows (with reference columns when the recipe precomputes)."""
    from datasets import Dataset

    args = recipe.to_trl(output_dir)
    configure_trainable(family, model, recipe)
    peft_config = lora_config(family, model, recipe) if recipe.lora is not None else None
    if peft_config is None and ref_model is None and not recipe.precompute_ref_log_probs:
        raise ValueError("full fine-tuning with a live reference needs ref_model (or precompute_ref_log_probs)")
    trainer = VideoDPOTrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
        data_collator=collator,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    trainer.projector_learning_rate = recipe.projector_learning_rate
    trainer.projector_names = tuple(projector_module_names(family, model))
    return trainer


def train_dpo(
    model_path: str | Path,
    preferences: PreferenceDataset,
    corpus: VideoCorpus,
    recipe: DPORecipe,
    output_dir: str | Path,
    *,
    resume: bool = True,
    family: VideoLLMFamily | None = None,
    data_versions: dict[str, Any] | None = None,
    base_model_name: str | None = None,
    callbacks: list[Any] | None = None,
) -> TrainingResult:
    """Train ``model_path`` with DPO on ``preferences`` (frames from ``corpus``).

    Args:
        model_path: Hub id or local folder of the base model.
        preferences: Pairs; the model is shown each pair's original (true-order) video.
        corpus: The prepared corpus holding the frames (``preferences.media_root``).
        recipe: Hyper-parameters (:class:`DPORecipe`).
        output_dir: Checkpoints, final weights and logs.
        resume: Continue from the newest checkpoint in ``output_dir`` if there is one.
        family: The model's family adapter (default: looked up from its ``model_type``).
        data_versions: Artifact names -> versions of the data, recorded in the model card.
        base_model_name: How the model card names the base model (default ``model_path``;
            the pipeline names its own models by artifact, not by a local folder).
        callbacks: Extra ``transformers.TrainerCallback`` objects.
    """
    start = start_training(
        model_path, family, recipe, output_dir, corpus, VideoPreferenceCollator,
        resume=resume, examples=preferences.pairs, what="preference pairs",
    )
    output_dir, family, model, collator = start.output_dir, start.family, start.model, start.collator
    rows = preference_rows(preferences)

    ref_model = None
    if recipe.precompute_ref_log_probs:
        # Before LoRA wrapping and training the policy is the reference. The training
        # arguments set up a multi-process launch's process group (gloo on the CPU, nccl on
        # GPUs) as the Trainer will; each process computes its share of the pairs and all
        # gather the values, so they train with the same columns. Rank 0 writes the file that
        # resumed runs reuse, whole and only after every process has read it and passed the
        # gather, so all processes take the same branch here.
        training_args = recipe.to_trl(output_dir)
        key = _reference_key(start.run, recipe, family)
        stored = load_reference_logps(output_dir / REFERENCE_FILE, rows, key=key)
        if stored is None:
            if not is_partitioned(model):  # DeepSpeed placed a ZeRO-3 model's shards already
                model.to(training_device(recipe))
            with partitioned_forward(model, training_args):
                values = gather_reference_logps(
                    model, collator, rows, batch_size=recipe.ref_batch_size or recipe.per_device_train_batch_size
                )
            rows = with_reference_logps(rows, values)
            if training_args.process_index == 0:
                save_reference_logps(output_dir / REFERENCE_FILE, rows, key=key)
        else:
            rows = stored
    elif recipe.lora is None:
        ref_model, _ = load_for_training(family, str(model_path), recipe)

    trainer = build_dpo_trainer(
        model, start.processor, family, rows, collator, recipe, output_dir, ref_model=ref_model, callbacks=callbacks
    )
    return train_and_finish(trainer, start, recipe, base_model_name or str(model_path), data_versions, "DPO")

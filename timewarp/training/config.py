"""Training recipes: plain dataclasses whose defaults are the paper's GPU recipe.

A recipe is what one decides about a run (losses, rates, batch, LoRA, DeepSpeed), kept
apart from the data and the model path so it can live in a YAML file, be versioned and be
written into the model card. :meth:`DPORecipe.to_trl` / :meth:`SFTRecipe.to_trl` turn it
into TRL's ``DPOConfig`` / ``SFTConfig``; anything a recipe has no field for can still be
passed through ``trl_overrides``.

Defaults (TimeWarp, as released): sigmoid DPO, beta 0.1, LoRA r=128 / alpha=256 /
dropout 0.05, lr 5e-7 with the projector at 2e-5, 3 epochs, warmup 10 %, linear schedule,
no weight decay, bf16, gradient checkpointing, per-device batch 4 x accumulation 4,
checkpoints every 500 steps, 8 frames per video.

This module must not import zenml, torch or transformers (recipes are read by pipeline
code that may not have them).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["DPORecipe", "LoraRecipe", "SFTRecipe", "TrainingRecipe", "budget_matched_recipe", "continued_sft_recipe", "examples_seen", "matched_steps"]

#: Projections of a Qwen2/LLaMA-style decoder layer.
LANGUAGE_MODEL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

_R = TypeVar("_R", bound="TrainingRecipe")


@dataclass
class LoraRecipe:
    """LoRA on the language model's projections (the family restricts the targets to its
    language model, so the vision tower is not adapted)."""

    r: int = field(default=128, metadata={"help": "LoRA rank: the inner dimension of each adapter."})
    alpha: int = field(default=256, metadata={"help": "LoRA scaling numerator: adapters are scaled by alpha / r."})
    dropout: float = field(default=0.05, metadata={"help": "Dropout on the adapters' input, in [0, 1)."})
    target_modules: list[str] = field(
        default_factory=lambda: list(LANGUAGE_MODEL_PROJECTIONS),
        metadata={
            "help": "Names of the projections to adapt; the family restricts them to its language model, "
            "so the vision tower's same-named projections are left alone."
        },
    )
    bias: str = field(
        default="none", metadata={"help": "Which biases LoRA trains: 'none', 'all' or 'lora_only' (PEFT's choices)."}
    )

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha <= 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"invalid LoRA settings: r={self.r}, alpha={self.alpha}, dropout={self.dropout}")
        if not self.target_modules:
            raise ValueError("LoRA needs at least one target module")


@dataclass
class TrainingRecipe:
    """Settings shared by the DPO and SFT recipes."""

    learning_rate: float = field(default=5e-7, metadata={"help": "Peak learning rate of the model's weights."})
    projector_learning_rate: float | None = field(
        default=2e-5,
        metadata={
            "help": "Learning rate of a separate parameter group for the multimodal projector. None: the same "
            "rate as the rest; with LoRA, None also leaves the projector frozen."
        },
    )
    train_vision_tower: bool = field(
        default=False,
        metadata={
            "help": "Full fine-tuning only: also train the vision encoder (frozen by default, as in "
            "LLaVA-style recipes; LoRA never adapts it)."
        },
    )
    num_train_epochs: float = field(default=3.0, metadata={"help": "Passes over the training data."})
    max_steps: int = field(default=-1, metadata={"help": "Optimizer steps to train; > 0 overrides the epochs."})
    warmup_ratio: float = field(
        default=0.1, metadata={"help": "Share of the training steps spent warming the learning rate up, in [0, 1)."}
    )
    lr_scheduler_type: str = field(
        default="linear", metadata={"help": "Learning rate schedule after warm-up (a transformers scheduler name)."}
    )
    lr_scheduler_kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "Arguments of the schedule, e.g. for reduce_lr_on_plateau (SFT with a validation split: the "
            "rate drops when the validation loss stops falling) {patience: 0, factor: 0.25}."
        },
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    per_device_train_batch_size: int = field(
        default=4, metadata={"help": "Rows per forward in each process (a DPO row is a chosen/rejected pair)."}
    )
    gradient_accumulation_steps: int = field(
        default=4, metadata={"help": "Forwards whose gradients add up to one optimizer step."}
    )
    bf16: bool = field(default=True, metadata={"help": "Train in bfloat16 (GPU recipes); False: float32."})
    gradient_checkpointing: bool = field(
        default=True, metadata={"help": "Recompute activations in the backward pass to save memory."}
    )
    max_length: int | None = field(
        default=None,
        metadata={"help": "Tokens kept per sequence; None: no truncation (video tokens are never cut)."},
    )
    save_steps: int = field(default=500, metadata={"help": "Optimizer steps between checkpoints."})
    save_total_limit: int | None = field(
        default=None, metadata={"help": "Checkpoints kept (the oldest are deleted); None: all."}
    )
    logging_steps: int = field(default=10, metadata={"help": "Optimizer steps between training log entries."})
    seed: int = field(default=42, metadata={"help": "Seed of the trainer's random numbers (data order, dropout)."})
    frames_per_video: int = field(
        default=8, metadata={"help": "Frames shown per video, spread evenly over its stored frames."}
    )
    lora: LoraRecipe | None = field(
        default_factory=LoraRecipe,
        metadata={"help": "LoRA settings; None: full fine-tuning. A mapping in YAML (lora: {r: 16})."},
    )
    deepspeed: str | None = field(
        default=None,
        metadata={"help": "Path to a DeepSpeed JSON config (configs/deepspeed/zero2.json ...); None: no DeepSpeed."},
    )
    use_cpu: bool = field(default=False, metadata={"help": "Train on the CPU even where there are GPUs."})
    num_processes: int | None = field(
        default=None,
        metadata={
            "help": "Processes to train in (data parallel; the global batch is num_processes x per-device "
            "batch x accumulation). None: one per visible GPU, one on the CPU. N > 1 re-launches the training "
            "under torchrun: one process per GPU, or N CPU processes (gloo) with use_cpu or without GPUs. The "
            "TIMEWARP_NPROC environment variable overrides it."
        },
    )
    dataloader_num_workers: int = field(
        default=0, metadata={"help": "Data loader worker processes; 0: load batches in the training process."}
    )
    torch_threads: int | None = field(
        default=None,
        metadata={
            "help": "CPU threads torch computes with in each training process (torch.set_num_threads), fixed so "
            "that a seed's arithmetic does not depend on the machine's core count; None: torch's default."
        },
    )
    deterministic: bool = field(
        default=False,
        metadata={
            "help": "Use torch's deterministic algorithms where it has them (use_deterministic_algorithms, "
            "warn_only: an op without one warns instead of failing), for runs that repeat per seed."
        },
    )
    trl_overrides: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Any other TrainingArguments / DPOConfig / SFTConfig field, passed through verbatim."},
    )

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):
            self.lora = LoraRecipe(**self.lora)
        if self.deepspeed is not None:
            self.deepspeed = str(self.deepspeed)
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.frames_per_video < 1:
            raise ValueError(f"frames_per_video must be at least 1, got {self.frames_per_video}")
        if self.per_device_train_batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("batch size and gradient accumulation must be at least 1")
        if self.num_processes is not None and self.num_processes < 1:
            raise ValueError(f"num_processes must be at least 1 (or null: one per GPU), got {self.num_processes}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"torch_threads must be at least 1 (or null: torch's default), got {self.torch_threads}")

    # -- (de)serialisation ------------------------------------------------------------------

    @classmethod
    def from_dict(cls: type[_R], values: dict[str, Any] | None = None, **overrides: Any) -> _R:
        """A recipe from ``values`` then ``overrides`` (both optional); unknown keys raise.
        ``lora: null`` disables LoRA, ``lora: {r: 16}`` changes only the rank."""
        merged = {**(values or {}), **overrides}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {unknown}")
        return cls(**merged)

    @classmethod
    def own_fields(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The entries of ``values`` that are fields of this recipe (shared overrides hold
        DPO-only fields such as ``beta`` that mean nothing to SFT)."""
        known = {f.name for f in fields(cls)}
        return {key: value for key, value in values.items() if key in known}

    @classmethod
    def from_yaml(cls: type[_R], path: str | Path, **overrides: Any) -> _R:
        """Read a recipe from a YAML mapping (optionally under a top-level ``recipe:`` key)."""
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a recipe must be a mapping")
        if set(data) == {"recipe"}:
            data = data["recipe"] or {}
        return cls.from_dict(data, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self, path: str | Path) -> Path:
        import yaml

        path = Path(path)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    def replace(self: _R, **changes: Any) -> _R:
        return dataclasses.replace(self, **changes)

    @classmethod
    def cpu_test(cls: type[_R], **overrides: Any) -> _R:
        """The settings a CPU run needs (fp32, no checkpointing, CPU device), small batches."""
        values: dict[str, Any] = {
            "bf16": False,
            "gradient_checkpointing": False,
            "use_cpu": True,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 1,
            "logging_steps": 1,
            "frames_per_video": 4,
        }
        values.update(overrides)
        return cls.from_dict(values)

    # -- TRL arguments ----------------------------------------------------------------------

    def _common_trl_kwargs(self, output_dir: str | Path) -> dict[str, Any]:
        return {
            "output_dir": str(output_dir),
            "learning_rate": self.learning_rate,
            "num_train_epochs": self.num_train_epochs,
            "max_steps": self.max_steps,
            # transformers 5 dropped warmup_ratio: a warmup_steps below 1 is a ratio.
            "warmup_steps": self.warmup_ratio,
            "lr_scheduler_type": self.lr_scheduler_type,
            "lr_scheduler_kwargs": dict(self.lr_scheduler_kwargs),
            "weight_decay": self.weight_decay,
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "bf16": self.bf16,
            # transformers 5 renamed it; the old name still mirrors the new one for TRL.
            "activation_checkpointing": self.gradient_checkpointing,
            "max_length": self.max_length,
            "save_strategy": "steps",
            "save_steps": self.save_steps,
            "save_total_limit": self.save_total_limit,
            "logging_steps": self.logging_steps,
            "logging_first_step": True,
            "seed": self.seed,
            "deepspeed": self.deepspeed,
            "use_cpu": self.use_cpu,
            "dataloader_num_workers": self.dataloader_num_workers,
            # Our collators read raw rows (video ids, texts); nothing may be dropped.
            "remove_unused_columns": False,
            "report_to": "none",
        }


@dataclass
class DPORecipe(TrainingRecipe):
    """DPO on (video, question, chosen, rejected) with TRL's DPOTrainer."""

    loss_type: str | list[str] = field(
        default="sigmoid",
        metadata={
            "help": "One DPO loss or a list (e.g. ['sigmoid', 'sft'], weighted by loss_weights), as TRL accepts."
        },
    )
    loss_weights: list[float] | None = field(
        default=None, metadata={"help": "Weight of each loss of loss_type; None: all 1."}
    )
    beta: float = field(
        default=0.1, metadata={"help": "DPO's beta: how far the policy may move from the reference (higher: less)."}
    )
    label_smoothing: float = field(
        default=0.0, metadata={"help": "Assumed share of flipped preference labels (conservative DPO); 0: none."}
    )
    precompute_ref_log_probs: bool = field(
        default=True,
        metadata={
            "help": "Compute the reference log-probs once before training and store them with the data (so the "
            "reference model is not run each epoch nor kept in memory); False runs it every step."
        },
    )
    ref_batch_size: int | None = field(
        default=None, metadata={"help": "Pairs per reference forward; None: the per-device train batch."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        losses = [self.loss_type] if isinstance(self.loss_type, str) else list(self.loss_type)
        if not losses:
            raise ValueError("loss_type must name at least one loss")
        if self.loss_weights is not None and len(self.loss_weights) != len(losses):
            raise ValueError(f"{len(self.loss_weights)} loss_weights for {len(losses)} losses")
        if self.beta <= 0:
            raise ValueError(f"beta must be positive, got {self.beta}")

    @property
    def loss_types(self) -> list[str]:
        return [self.loss_type] if isinstance(self.loss_type, str) else list(self.loss_type)

    def to_trl(self, output_dir: str | Path) -> Any:
        """TRL ``DPOConfig`` for this recipe."""
        from trl import DPOConfig

        kwargs = self._common_trl_kwargs(output_dir)
        kwargs.update(
            loss_type=self.loss_types,
            loss_weights=self.loss_weights,
            beta=self.beta,
            label_smoothing=self.label_smoothing,
            # Our trainer subclass reads the stored reference log-probs from the batch.
            precompute_ref_log_probs=self.precompute_ref_log_probs,
        )
        kwargs.update(self.trl_overrides)
        return DPOConfig(**kwargs)


@dataclass
class SFTRecipe(TrainingRecipe):
    """Supervised fine-tuning on (video, question, answer) with TRL's SFTTrainer; loss on
    the answer tokens only. Defaults as for DPO except a higher learning rate (2e-5, a
    common LoRA SFT rate; the paper trains with DPO only)."""

    learning_rate: float = field(
        default=2e-5, metadata={"help": "Peak learning rate of the model's weights (a common LoRA SFT rate)."}
    )
    validation_fraction: float = field(
        default=0.0,
        metadata={
            "help": "Share of the SFT examples' videos (training videos only, never the benchmark's) held out, "
            "by a hash of (seed, video id), to measure the validation loss after every epoch; in [0, 1). "
            "0: train on every example, no validation."
        },
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Epochs without a lower validation loss after which SFT stops and keeps its best epoch "
            "(transformers' EarlyStoppingCallback, load_best_model_at_end); num_train_epochs (or max_steps "
            "> 0) is then the most it trains. Needs validation_fraction > 0. None: train num_train_epochs, no early stopping."
        },
    )
    early_stopping_threshold: float = field(
        default=0.0,
        metadata={
            "help": "The least drop in validation loss that counts as a new best for early stopping (absolute; "
            "transformers' early_stopping_threshold): a loss that only creeps down near 0 ends the run."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ValueError(f"early_stopping_patience must be at least 1 (or null: off), got {self.early_stopping_patience}")
        if self.early_stopping_threshold < 0:
            raise ValueError(f"early_stopping_threshold must be >= 0, got {self.early_stopping_threshold}")
        if self.validation_fraction == 0.0 and self.early_stopping_patience is not None:
            raise ValueError("early_stopping_patience needs a validation split: set validation_fraction > 0 "
                             "(e.g. 0.1), or early_stopping_patience: null to train num_train_epochs")
        if self.validation_fraction == 0.0 and self.lr_scheduler_type == "reduce_lr_on_plateau":
            raise ValueError("lr_scheduler_type reduce_lr_on_plateau follows the validation loss: set "
                             "validation_fraction > 0 (e.g. 0.1), or another schedule (linear)")

    @property
    def early_stopping(self) -> bool:
        return self.early_stopping_patience is not None

    def to_trl(self, output_dir: str | Path) -> Any:
        """TRL ``SFTConfig`` for this recipe."""
        from trl import SFTConfig

        kwargs = self._common_trl_kwargs(output_dir)
        if self.validation_fraction > 0:
            # The validation loss once per epoch; only the loss (not every token's logits) is kept.
            # (the metric early stopping and reduce_lr_on_plateau follow).
            kwargs.update(eval_strategy="epoch", per_device_eval_batch_size=self.per_device_train_batch_size,
                          prediction_loss_only=True, metric_for_best_model="eval_loss", greater_is_better=False)
        if self.early_stopping:
            # load_best_model_at_end needs a checkpoint at every evaluation.
            kwargs.update(save_strategy="epoch", load_best_model_at_end=True)
        # Our collator builds labels (answer tokens only) and the vision tensors itself.
        kwargs["dataset_kwargs"] = {"skip_prepare_dataset": True}
        kwargs.update(self.trl_overrides)
        return SFTConfig(**kwargs)


def examples_seen(recipe: TrainingRecipe, dataset_size: int, processes: int = 1) -> int:
    """Training examples a run of ``recipe`` on ``dataset_size`` rows in ``processes``
    processes sees (a preference pair counts once)."""
    if recipe.max_steps > 0:
        return recipe.max_steps * recipe.per_device_train_batch_size * recipe.gradient_accumulation_steps * processes
    return math.ceil(recipe.num_train_epochs * dataset_size)


def matched_steps(recipe: TrainingRecipe, reference_size: int, processes: int = 1) -> int:
    """Optimizer steps (with ``recipe``'s batch) in which ``recipe`` sees as many examples as
    on ``reference_size`` rows: one compute budget for arms whose datasets differ in size."""
    per_step = recipe.per_device_train_batch_size * recipe.gradient_accumulation_steps * processes
    return max(1, math.ceil(examples_seen(recipe, reference_size, processes) / per_step))


def budget_matched_recipe(dpo: DPORecipe, reference_pairs: int, processes: int = 1) -> DPORecipe:
    """``dpo`` for exactly the steps it would take on ``reference_pairs`` pairs: the
    variants' arms train for the Explicit arm's budget whatever their own size (a smaller
    set is cycled, a larger one is not seen whole)."""
    return dpo.replace(max_steps=matched_steps(dpo, reference_pairs, processes))


def continued_sft_recipe(sft: SFTRecipe, dpo: DPORecipe, preference_pairs: int, processes: int = 1) -> SFTRecipe:
    """The control arm: SFT continued with DPO's optimiser budget (learning rates, schedule,
    warm-up, batch, processes) for as many examples as ``dpo`` sees on ``preference_pairs``
    pairs in ``processes`` processes, so that only the objective differs. Restarting at the
    SFT stage's own peak rate instead would undo part of what that stage learnt and flatter
    DPO."""
    return sft.replace(
        num_processes=dpo.num_processes,
        learning_rate=dpo.learning_rate,
        projector_learning_rate=dpo.projector_learning_rate,
        lr_scheduler_type=dpo.lr_scheduler_type,
        lr_scheduler_kwargs=dict(dpo.lr_scheduler_kwargs),
        warmup_ratio=dpo.warmup_ratio,
        weight_decay=dpo.weight_decay,
        per_device_train_batch_size=dpo.per_device_train_batch_size,
        gradient_accumulation_steps=dpo.gradient_accumulation_steps,
        max_steps=matched_steps(dpo, preference_pairs, processes),
        # A fixed budget like DPO's, on every SFT example: no validation split, no early stop.
        validation_fraction=0.0,
        early_stopping_patience=None,
    )

"""Training stage steps: base model -> SFT / DPO, and the continued-SFT control."""

from steps.training.continue_sft import continue_sft
from steps.training.prepare_base_model import prepare_base_model
from steps.training.train_dpo import train_dpo
from steps.training.train_sft import train_sft

__all__ = ["continue_sft", "prepare_base_model", "train_dpo", "train_sft"]

"""DPO and SFT training of video-LLMs on TimeWarp data (TRL trainers, family adapters).

Import the trainers from their modules (:mod:`timewarp.training.dpo`,
:mod:`timewarp.training.sft`); this package only re-exports the recipes, which need
neither torch nor TRL. This package must not import zenml.
"""

from timewarp.training.config import DPORecipe, LoraRecipe, SFTRecipe, TrainingRecipe

__all__ = ["DPORecipe", "LoraRecipe", "SFTRecipe", "TrainingRecipe"]

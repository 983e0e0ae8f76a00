from typing import Annotated, Any

from zenml import step

from steps.training._checkpoints import run_training_step
from timewarp.data.corpus import VideoCorpus
from timewarp.generation.datasets import PreferenceDataset, SFTDataset
from timewarp.models.checkpoint import ModelCheckpoint
from timewarp.training.config import DPORecipe, SFTRecipe, continued_sft_recipe
from timewarp.training.launch import training_processes
from timewarp.training.sft import train_sft as run_sft

CONTROL_KIND = "SFT-cont"


@step
def continue_sft(
    sft_model: ModelCheckpoint,
    sft_pairs: SFTDataset,
    preference_pairs: PreferenceDataset,
    corpus: VideoCorpus,
    sft_recipe: dict[str, Any],
    dpo_recipe: dict[str, Any],
    checkpoint_root: str,
) -> Annotated[ModelCheckpoint, "control_model"]:
    """The control arm: SFT continued from the same checkpoint DPO starts from, for as many
    examples as DPO sees, so a DPO gain is not just more training."""
    dpo = DPORecipe.from_dict(dpo_recipe)
    recipe = continued_sft_recipe(
        SFTRecipe.from_dict(sft_recipe), dpo, len(preference_pairs.pairs), processes=training_processes(dpo)
    )
    return run_training_step(
        CONTROL_KIND, run_sft, sft_model, recipe, recipe.to_dict(), checkpoint_root, base_input="sft_model",
        examples=sft_pairs, corpus=corpus,
    )

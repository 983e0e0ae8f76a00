from typing import Annotated, Any

from zenml import step

from steps.training._checkpoints import run_training_step
from timewarp.data.corpus import VideoCorpus
from timewarp.generation.datasets import PreferenceDataset
from timewarp.models.checkpoint import ModelCheckpoint
from timewarp.training.config import DPORecipe, budget_matched_recipe
from timewarp.training.dpo import train_dpo as run_dpo
from timewarp.training.launch import training_processes


@step
def train_dpo(
    base_model: ModelCheckpoint,
    preference_pairs: PreferenceDataset,
    corpus: VideoCorpus,
    recipe: dict[str, Any],
    checkpoint_root: str,
    budget_pairs: PreferenceDataset | None = None,
) -> Annotated[ModelCheckpoint, "dpo_model"]:
    """DPO on ``preference_pairs`` (the model sees each pair's original video, frames from
    ``corpus``); resumes from the newest checkpoint of an earlier attempt with the same
    inputs. With ``budget_pairs``, trains for exactly the optimizer steps the recipe takes on
    those pairs (one compute budget for every arm of ``timewarp_variants``)."""
    dpo = DPORecipe.from_dict(recipe)
    if budget_pairs is not None:
        dpo = budget_matched_recipe(dpo, len(budget_pairs.pairs), processes=training_processes(dpo))
        recipe = dpo.to_dict()
        print(f"DPO on {len(preference_pairs.pairs)} pairs for {dpo.max_steps} optimizer steps, "
              f"the budget of {len(budget_pairs.pairs)} reference pairs")
    return run_training_step(
        "DPO", run_dpo, base_model, dpo, recipe, checkpoint_root,
        preferences=preference_pairs, corpus=corpus,
    )

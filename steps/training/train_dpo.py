from typing import Annotated, Any

from zenml import step

from steps.training._checkpoints import run_training_step
from timewarp.data.corpus import VideoCorpus
from timewarp.generation.datasets import PreferenceDataset
from timewarp.models.checkpoint import ModelCheckpoint
from timewarp.training.config import DPORecipe
from timewarp.training.dpo import train_dpo as run_dpo


@step
def train_dpo(
    base_model: ModelCheckpoint,
    preference_pairs: PreferenceDataset,
    corpus: VideoCorpus,
    recipe: dict[str, Any],
    checkpoint_root: str,
) -> Annotated[ModelCheckpoint, "dpo_model"]:
    """DPO on the explicit preference pairs (the model sees each pair's original video);
    resumes from the newest checkpoint of an earlier attempt with the same inputs."""
    return run_training_step(
        "DPO", run_dpo, base_model, DPORecipe.from_dict(recipe), recipe, checkpoint_root,
        preferences=preference_pairs, corpus=corpus,
    )

from typing import Annotated, Any

from zenml import step

from steps.training._checkpoints import run_training_step
from timewarp.data.corpus import VideoCorpus
from timewarp.generation.datasets import SFTDataset
from timewarp.models.checkpoint import ModelCheckpoint
from timewarp.training.config import SFTRecipe
from timewarp.training.sft import train_sft as run_sft


@step
def train_sft(
    base_model: ModelCheckpoint,
    sft_pairs: SFTDataset,
    corpus: VideoCorpus,
    recipe: dict[str, Any],
    checkpoint_root: str,
) -> Annotated[ModelCheckpoint, "sft_model"]:
    """Supervised fine-tuning on the SFT pairs; resumes like ``train_dpo``."""
    return run_training_step(
        "SFT", run_sft, base_model, SFTRecipe.from_dict(recipe), recipe, checkpoint_root,
        examples=sft_pairs, corpus=corpus,
    )

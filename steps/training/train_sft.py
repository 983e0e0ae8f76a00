from typing import Annotated, Any

from zenml import step

from steps.training._checkpoints import checkpoint_dir, input_versions
from timewarp.corpus import VideoCorpus
from timewarp.generation.datasets import SFTDataset
from timewarp.models.checkpoint import ModelCheckpoint
from timewarp.models.registry import family_by_name
from timewarp.training.config import SFTRecipe
from timewarp.training.sft import train_sft as run_sft
from timewarp.training.launch import run_training


@step
def train_sft(
    base_model: ModelCheckpoint,
    sft_pairs: SFTDataset,
    corpus: VideoCorpus,
    recipe: dict[str, Any],
    checkpoint_root: str,
) -> Annotated[ModelCheckpoint, "sft_model"]:
    """Supervised fine-tuning on the SFT pairs; resumes like ``train_dpo``."""
    sft_recipe = SFTRecipe.from_dict(recipe)
    output = checkpoint_dir(checkpoint_root, "SFT", recipe)
    versions = input_versions()
    # One process per GPU when the machine has several (torchrun), else in this process.
    result = run_training(
        run_sft,
        model_path=base_model.path, examples=sft_pairs, corpus=corpus, recipe=sft_recipe, output_dir=output,
        family=family_by_name(base_model.family), data_versions=versions,
    )
    return ModelCheckpoint(
        path=str(result.output_dir), family=base_model.family, kind="SFT", base_model=base_model.path,
        adapter=sft_recipe.lora is not None, history=result.history, final_metrics=result.final_metrics,
        data_versions=versions, resumed_from=result.resumed_from,
        recipe=recipe,
    )

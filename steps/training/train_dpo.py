from typing import Annotated, Any

from zenml import step

from steps.training._checkpoints import checkpoint_dir, input_versions
from timewarp.corpus import VideoCorpus
from timewarp.generation.datasets import PreferenceDataset
from timewarp.models.checkpoint import ModelCheckpoint
from timewarp.models.registry import family_by_name
from timewarp.training.config import DPORecipe
from timewarp.training.dpo import train_dpo as run_dpo
from timewarp.training.launch import run_training


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
    dpo_recipe = DPORecipe.from_dict(recipe)
    output = checkpoint_dir(checkpoint_root, "DPO", recipe)
    versions = input_versions()
    # One process per GPU when the machine has several (torchrun), else in this process.
    result = run_training(
        run_dpo,
        model_path=base_model.path, preferences=preference_pairs, corpus=corpus, recipe=dpo_recipe, output_dir=output,
        family=family_by_name(base_model.family), data_versions=versions,
    )
    return ModelCheckpoint(
        path=str(result.output_dir), family=base_model.family, kind="DPO", base_model=base_model.path,
        adapter=dpo_recipe.lora is not None, history=result.history, final_metrics=result.final_metrics,
        data_versions=versions, resumed_from=result.resumed_from,
        recipe=recipe,
    )

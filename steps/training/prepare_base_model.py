from typing import Annotated

from zenml import step

from steps._workdir import scratch_dir
from timewarp.models.checkpoint import ModelCheckpoint
from timewarp.models.registry import family_by_name, family_for


@step
def prepare_base_model(
    base_model: str | None, model_family: str, seed: int
) -> Annotated[ModelCheckpoint, "base_model"]:
    """The model to train: a hub id / path as given (recorded, not copied), or, when unset,
    a tiny random-weight model of ``model_family`` built offline and stored."""
    if base_model:
        family = family_for(base_model).name
        return ModelCheckpoint(path=base_model, family=family, kind="base", stored=False)
    folder = family_by_name(model_family).make_tiny(scratch_dir("base-model"), seed=seed)
    return ModelCheckpoint(path=str(folder), family=model_family, kind="base")

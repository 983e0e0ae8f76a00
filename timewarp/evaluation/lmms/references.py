"""A model named by a string, loaded for benchmarking: an MLflow registry URI
(``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``: the servable model logged by
:mod:`timewarp.tracking.servable`, loaded as the champion is), a local folder (one of our
checkpoints with its ``checkpoint.json`` card, full or LoRA, or any HF-format model
folder) or a hub id.

This module must not import zenml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from timewarp.models.checkpoint import CARD, ModelCheckpoint
from timewarp.models.placement import choose_placement
from timewarp.models.registry import family_for

__all__ = ["load_model_reference"]


def _load_registered(uri: str) -> tuple[Any, Any, Any]:
    import mlflow

    try:
        python_model = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    except Exception as error:
        raise RuntimeError(
            f"could not load {uri} from the MLflow registry ({type(error).__name__}: {error}); "
            "check the name and alias/version (MlflowClient().search_model_versions(\"name='NAME'\")) "
            "and that MLFLOW_TRACKING_URI points at the registry"
        ) from error
    missing = [name for name in ("model", "processor", "family") if not hasattr(python_model, name)]
    if missing:
        raise ValueError(
            f"{uri} is a {type(python_model).__name__}, not one of our servable video-LLMs (it lacks {missing}); "
            "register models with timewarp.tracking.servable.log_servable_model"
        )
    return python_model.model, python_model.processor, python_model.family


def load_model_reference(ref: str, *, device: str | None = None, dtype: str | None = None) -> tuple[Any, Any, Any]:
    """(model, processor, family) for ``ref`` (see the module docstring), placed by
    :func:`~timewarp.models.placement.choose_placement` unless ``device``/``dtype`` say."""
    if ref.startswith("models:/"):
        return _load_registered(ref)
    folder = Path(ref)
    if (folder / CARD).is_file():
        checkpoint = ModelCheckpoint.read_card(folder)
        checkpoint.path = str(folder)  # the card records where it was written; it is read here
        return checkpoint.load(device=device, dtype=dtype)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{ref} is a file; give a model folder, a hub id or a models:/NAME@ALIAS URI")
    try:
        family = family_for(ref)
    except OSError as error:
        raise ValueError(
            f"{ref} is neither a model folder, a hub id transformers can resolve, nor a models:/ URI ({error})"
        ) from error
    placement = choose_placement(device=device, dtype=dtype)
    model, processor = family.load(ref, dtype=placement.torch_dtype, device_map=placement.device_map)
    return model, processor, family

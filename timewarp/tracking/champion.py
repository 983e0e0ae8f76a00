"""The registry's current champion, loaded for re-scoring (the ``evaluate_champion`` step).

The champion is loaded from the MLflow registry itself (``models:/<name>/<version>``), the
model a user serves, not from a training folder: a retrain compares against exactly what is
deployed, whichever run and machine produced it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlflow

from timewarp.tracking.registry import current_champion

#: ``ModelEvaluation.model_kind`` of a re-scored champion.
CHAMPION_KIND = "champion"


@dataclass
class LoadedChampion:
    version: str
    uri: str  # models:/<name>/<version>
    model: Any
    processor: Any
    family: Any


def load_champion(model_name: str) -> LoadedChampion | None:
    """The champion version of ``model_name`` with its model, processor and family adapter,
    or None when the registry has no champion. A champion whose model cannot be loaded is
    an error naming the version: the gate must not silently compare against nothing."""
    version = current_champion(model_name)
    if version is None:
        return None
    uri = f"models:/{model_name}/{version.version}"
    try:
        python_model = mlflow.pyfunc.load_model(uri).unwrap_python_model()
        model, processor, family = python_model.model, python_model.processor, python_model.family
    except Exception as error:
        raise RuntimeError(
            f"the champion {uri} (alias champion) could not be loaded for re-scoring: {type(error).__name__}: {error}. "
            f"Fix its artifacts, or move the alias to a loadable version (MlflowClient().set_registered_model_alias("
            f"{model_name!r}, 'champion', <version>)) or delete it to let the next candidate become champion"
        ) from error
    return LoadedChampion(str(version.version), uri, model, processor, family)

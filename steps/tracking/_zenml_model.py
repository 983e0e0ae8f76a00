"""The ZenML Model side of a registration: the run's model version mirrors the MLflow
registry's decision."""

from zenml import get_step_context
from zenml.client import Client
from zenml.enums import ModelStages

from timewarp.tracking.registry import CHAMPION


def mirror_on_zenml_model(alias: str, mlflow_name: str, mlflow_version: str, tags: dict[str, str]) -> None:
    """The run's ZenML model version: stage production (champion) or staging, tagged with
    the decision and the MLflow version, the gate's tags as metadata."""
    model = get_step_context().model
    if model is None:
        return
    stage = ModelStages.PRODUCTION if alias == CHAMPION else ModelStages.STAGING
    Client().update_model_version(
        model.model_id, model.id, stage=stage, force=True, add_tags=[alias, f"mlflow:{mlflow_name}/{mlflow_version}"]
    )
    model.log_metadata({"promotion": {**tags, "mlflow_model": f"models:/{mlflow_name}/{mlflow_version}"}})

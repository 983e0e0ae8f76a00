import tempfile
from pathlib import Path
from typing import Annotated

import mlflow
from zenml import get_step_context, log_metadata, step

from timewarp.evaluation.results import ComparisonReport
from timewarp.models.checkpoint import ModelCheckpoint
from timewarp.plots import comparison_png, training_curves_png
from timewarp.tracking.promotion import GATED_METRICS, Scores
from timewarp.tracking.registry import log_model_folder, register_and_gate


def _flatten(prefix: str, values: dict) -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(f"{prefix}{key}.", value))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


# Never cached: every run registers a new model version and logs its own MLflow run.
@step(enable_cache=False)
def register_model(
    trained_model: ModelCheckpoint, evaluation_report: ComparisonReport, gate_scorer: str, registered_model_name: str
) -> Annotated[dict[str, str], "model_registration"]:
    """Log the run to MLflow (recipe, data versions, training curves, evaluation metrics and
    plot, the model), register a new model version, and move the ``champion`` alias to it
    only if it beats the current champion on the same benchmark version."""
    if mlflow.active_run() is None:
        raise RuntimeError(
            "register_model needs the MLflow experiment tracker of the stack (run `make stack`, "
            "or give the step `experiment_tracker=`)"
        )
    context = get_step_context()
    mlflow.log_params(_flatten("recipe.", trained_model.recipe))
    mlflow.log_params({
        "base_model": trained_model.base_model or "", "family": trained_model.family, "kind": trained_model.kind,
        "adapter": str(trained_model.adapter), "gate_scorer": gate_scorer,
        "benchmark_version": evaluation_report.benchmark_version,
        **{f"data.{name}": version for name, version in trained_model.data_versions.items()},
    })
    for row in trained_model.history:
        step_number = int(row.get("step", 0))
        for key, value in row.items():
            if key not in ("step", "epoch") and isinstance(value, (int, float)):
                mlflow.log_metric(f"train/{key}", float(value), step=step_number)
    metrics: dict[str, float] = {}
    for r in evaluation_report.rows:
        for kind, estimate in ((evaluation_report.base_kind, r.base), (evaluation_report.trained_kind, r.trained)):
            metrics[f"eval/{r.scorer}/{r.metric}/{kind}"] = estimate.value
        metrics[f"eval/{r.scorer}/{r.metric}/difference"] = r.difference.value
        metrics[f"eval/{r.scorer}/{r.metric}/difference_low"] = r.difference.low
        metrics[f"eval/{r.scorer}/{r.metric}/difference_high"] = r.difference.high
    mlflow.log_metrics(metrics)
    with tempfile.TemporaryDirectory() as folder:
        for name, image in (("evaluation.png", comparison_png(evaluation_report)),
                            ("training_curves.png", training_curves_png(trained_model.history))):
            (Path(folder) / name).write_bytes(image)
            mlflow.log_artifact(str(Path(folder) / name), artifact_path="plots")

    candidate = Scores(
        evaluation_report.benchmark_version,
        {m: evaluation_report.row(gate_scorer, m).trained.value for m in GATED_METRICS},
    )
    model_uri = log_model_folder(trained_model.path)
    run = mlflow.active_run().info
    registration = register_and_gate(
        model_uri, registered_model_name, candidate, GATED_METRICS,
        extra_tags={"zenml_run_id": str(context.pipeline_run.id), "mlflow_run_id": run.run_id},
    )
    summary = {
        "registered_model": registration.model_name,
        "version": registration.version,
        "alias": registration.alias,
        "reason": registration.decision.reason,
        "mlflow_run_id": run.run_id,
        "mlflow_experiment_id": run.experiment_id,
        "zenml_run": context.pipeline_run.name,
    }
    log_metadata({"registration": summary})
    print(
        f"MLflow run {run.run_id} (experiment {run.experiment_id}, tracking {mlflow.get_tracking_uri()})\n"
        f"Registered {registration.model_name} version {registration.version} as {registration.alias}: "
        f"{registration.decision.reason}\nZenML run {context.pipeline_run.name} ({context.pipeline_run.id})"
    )
    return summary

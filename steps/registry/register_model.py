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
    trained_model: ModelCheckpoint,
    evaluation_report: ComparisonReport,
    gate_scorer: str,
    registered_model_name: str,
    control_report: ComparisonReport | None = None,
) -> Annotated[dict[str, str], "model_registration"]:
    """Log the run to MLflow (recipe, data versions, training curves, evaluation metrics and
    plots, with the control arm's beside them when there is one, the model), register a new
    model version, and move the ``champion`` alias to it only if it beats the current
    champion on the same benchmark version."""
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
    reports = {"": evaluation_report, "control_": control_report}
    metrics: dict[str, float] = {}
    for prefix, report in reports.items():
        if report is None:
            continue
        for r in report.rows:
            for kind, estimate in ((report.base_kind, r.base), (report.trained_kind, r.trained)):
                for suffix, value in (("", estimate.value), ("_low", estimate.low), ("_high", estimate.high)):
                    metrics[f"eval/{r.scorer}/{r.metric}/{kind}{suffix}"] = value
            for suffix, value in (("", r.difference.value), ("_low", r.difference.low), ("_high", r.difference.high)):
                metrics[f"eval/{r.scorer}/{r.metric}/{prefix}difference{suffix}"] = value
    mlflow.log_metrics(metrics)
    plots = [("evaluation.png", comparison_png(evaluation_report)),
             ("training_curves.png", training_curves_png(trained_model.history))]
    if control_report is not None:
        plots.append(("evaluation_control.png", comparison_png(control_report)))
    with tempfile.TemporaryDirectory() as folder:
        for name, image in plots:
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
    # The closing lines of a run: every model's accuracies with 95% intervals, then where
    # the model went. One print: `zenml pipeline run` shows this message from the step's
    # stored logs when the step ran in a pod (pipelines/reporting.py).
    accuracies = [line for report in (evaluation_report, control_report) if report is not None for line in report.lines()]
    print("\n".join([
        *accuracies,
        f"MLflow run {run.run_id} (experiment {run.experiment_id}, tracking {mlflow.get_tracking_uri()})",
        f"Registered {registration.model_name} version {registration.version} as {registration.alias}: "
        f"{registration.decision.reason}",
        f"ZenML run {context.pipeline_run.name} ({context.pipeline_run.id})",
    ]))
    return summary

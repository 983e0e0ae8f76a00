from typing import Annotated

import mlflow
from zenml import get_step_context, log_metadata, step
from zenml.client import Client
from zenml.enums import ModelStages

from timewarp.evaluation.results import ComparisonReport, ModelEvaluation
from timewarp.models.checkpoint import ModelCheckpoint
from timewarp.tracking.promotion import GATED_METRICS, GatePolicy, decide
from timewarp.tracking.registry import CHAMPION, decision_tags, register_and_gate
from timewarp.tracking.run_log import log_training_run, report_metrics
from timewarp.tracking.servable import log_servable_model


# Never cached: every run registers a new model version and logs its own MLflow run.
@step(enable_cache=False)
def register_model(
    trained_model: ModelCheckpoint,
    evaluation_report: ComparisonReport,
    trained_evaluation: ModelEvaluation,
    champion_evaluation: ModelEvaluation,
    gate_scorer: str,
    registered_model_name: str,
    control_report: ComparisonReport | None = None,
    gate_metrics: tuple[str, ...] = GATED_METRICS,
    gate_margin: float = 0.0,
) -> Annotated[dict[str, str], "model_registration"]:
    """Log the run to MLflow (recipe, data versions, training curves, evaluation metrics and
    plots, the control arm's beside them when there is one, the servable model), register a
    new model version, and move the ``champion`` alias to it only if the promotion gate
    (:mod:`timewarp.tracking.promotion`) finds it better than the re-scored champion. The
    decision, its reason and both scores are tags of the MLflow version and mirrored on the
    ZenML model version (stage ``production`` for the champion, ``staging`` otherwise)."""
    if mlflow.active_run() is None:
        raise RuntimeError(
            "register_model needs the MLflow experiment tracker of the stack (run `make stack`, "
            "or give the step `experiment_tracker=`)"
        )
    context = get_step_context()
    policy = GatePolicy(gate_scorer, tuple(gate_metrics), gate_margin)
    champion = champion_evaluation if champion_evaluation.results else None
    decision = decide(trained_evaluation, champion, policy)

    reports = {"evaluation": evaluation_report, "evaluation_control": control_report, "vs_champion": decision.comparison}
    log_training_run(trained_model, {
        "gate_scorer": gate_scorer, "gate_metrics": ",".join(policy.metrics), "gate_margin": str(gate_margin),
        "benchmark_version": trained_evaluation.benchmark_version,
    }, {name: report for name, report in reports.items() if report is not None})
    metrics = report_metrics(evaluation_report)
    for prefix, report in (("control_", control_report), ("vs_champion_", decision.comparison)):
        if report is not None:
            metrics.update(report_metrics(report, prefix))
    mlflow.log_metric("gate/promoted", float(decision.promote))
    mlflow.log_metrics(metrics)

    model_uri = log_servable_model(trained_model, scorer=gate_scorer)
    run = mlflow.active_run().info
    tags = decision_tags(decision, policy, trained_evaluation.benchmark_version)
    scored_champion = champion_evaluation.model_path.rsplit("/", 1)[-1] if champion else None
    registration = register_and_gate(
        model_uri, registered_model_name, decision, {
            **tags, "zenml_run_id": str(context.pipeline_run.id), "mlflow_run_id": run.run_id,
        }, scored_champion,
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
    _mirror_on_zenml_model(registration.alias, registered_model_name, registration.version, tags)
    # The closing lines of a run: every model's accuracies with 95% intervals, the gate's
    # comparison with the champion, then where the model went. One print: `zenml pipeline
    # run` shows this message from the step's stored logs when the step ran in a pod
    # (pipelines/reporting.py).
    compared = decision.comparison.lines() if decision.comparison is not None else []
    accuracies = [line for report in (evaluation_report, control_report) if report is not None for line in report.lines()]
    print("\n".join([
        *accuracies,
        *[line for line in compared if line.lstrip().startswith(gate_scorer)],
        f"MLflow run {run.run_id} (experiment {run.experiment_id}, tracking {mlflow.get_tracking_uri()})",
        f"Registered {registration.model_name} version {registration.version} as {registration.alias}: "
        f"{registration.decision.reason}",
        f"ZenML run {context.pipeline_run.name} ({context.pipeline_run.id})",
    ]))
    return summary


def _mirror_on_zenml_model(alias: str, mlflow_name: str, mlflow_version: str, tags: dict[str, str]) -> None:
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

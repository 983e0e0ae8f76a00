from typing import Annotated

import mlflow
from zenml import get_step_context, log_metadata, step

from timewarp.evaluation.results import ComparisonReport, ModelEvaluation
from timewarp.models.checkpoint import ModelCheckpoint
from timewarp.tracking.promotion import GATED_METRICS, GatePolicy, decide
from steps.tracking._zenml_model import mirror_on_zenml_model
from timewarp.tracking.registry import decision_tags, register_and_gate
from timewarp.tracking.run_log import closing_lines, log_training_run
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
    """Log the run to MLflow (recipe, data versions, curves, evaluation metrics and plots,
    the servable model), register a new model version, and move the ``champion`` alias to it
    only if the promotion gate (:mod:`timewarp.tracking.promotion`) finds it better than the
    re-scored champion. The decision, its reason and both scores are tags of the MLflow
    version, mirrored on the ZenML model version (stage ``production`` or ``staging``)."""
    if mlflow.active_run() is None:
        raise RuntimeError("register_model needs the MLflow experiment tracker of the stack (run `make stack`, "
                           "or give the step `experiment_tracker=`)")
    context = get_step_context()
    policy = GatePolicy(gate_scorer, tuple(gate_metrics), gate_margin)
    champion = champion_evaluation if champion_evaluation.results else None
    decision = decide(trained_evaluation, champion, policy)
    version = trained_evaluation.benchmark_version
    log_training_run(trained_model, {"evaluation": evaluation_report, "evaluation_control": control_report},
                     decision, policy, version)
    run = mlflow.active_run().info
    tags = decision_tags(decision, policy, version)
    registration = register_and_gate(
        log_servable_model(trained_model, scorer=gate_scorer), registered_model_name, decision,
        {**tags, "zenml_run_id": str(context.pipeline_run.id), "mlflow_run_id": run.run_id},
        champion.model_path.rsplit("/", 1)[-1] if champion else None,  # models:/<name>/<version>
    )
    summary = {"registered_model": registration.model_name, "version": registration.version,
               "alias": registration.alias, "reason": registration.decision.reason, "mlflow_run_id": run.run_id,
               "mlflow_experiment_id": run.experiment_id, "zenml_run": context.pipeline_run.name}
    log_metadata({"registration": summary})
    mirror_on_zenml_model(registration.alias, registered_model_name, registration.version, tags)
    # The run's closing lines, in one print: `zenml pipeline run` shows this message from the
    # step's stored logs when the step ran in a pod (pipelines/reporting.py).
    print("\n".join([
        *closing_lines([evaluation_report, control_report], decision, policy, champion_evaluation.model_path),
        f"MLflow run {run.run_id} (experiment {run.experiment_id}, tracking {mlflow.get_tracking_uri()})",
        f"Registered {registration.model_name} version {registration.version} as {registration.alias}: "
        f"{registration.decision.reason}",
        f"ZenML run {context.pipeline_run.name} ({context.pipeline_run.id})",
    ]))
    return summary

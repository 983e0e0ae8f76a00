from typing import Annotated, Any

import mlflow
from zenml import get_step_context, step

from timewarp.evaluation.variants import VariantsReport
from timewarp.tracking.run_log import log_variants_run


# Never cached: every run logs its own MLflow run.
@step(enable_cache=False)
def log_variants(
    variants_report: VariantsReport, dpo_recipe: dict[str, Any]
) -> Annotated[dict[str, str], "variants_run"]:
    """Log the variants table to MLflow (metrics ``eval/<scorer>/<metric>/<arm>`` with their
    intervals and differences from SFT, the table and the plot) and end the run with it."""
    if mlflow.active_run() is None:
        raise RuntimeError("log_variants needs the MLflow experiment tracker of the stack (run `make stack`, "
                           "or give the step `experiment_tracker=`)")
    log_variants_run(variants_report, dpo_recipe)
    run, context = mlflow.active_run().info, get_step_context()
    # One print: `zenml pipeline run` shows it from the stored logs when the step ran in a pod.
    print("\n".join([
        *variants_report.table_lines(),
        f"MLflow run {run.run_id} (experiment {run.experiment_id}, tracking {mlflow.get_tracking_uri()})",
        f"Variants table of ZenML run {context.pipeline_run.name} ({context.pipeline_run.id})",
    ]))
    return {"mlflow_run_id": run.run_id, "mlflow_experiment_id": run.experiment_id,
            "zenml_run": context.pipeline_run.name, "benchmark_version": variants_report.benchmark_version}

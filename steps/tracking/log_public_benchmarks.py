from typing import Annotated

import mlflow
from zenml import get_step_context, step

from timewarp.evaluation.lmms.results import BenchmarkResults
from timewarp.tracking.run_log import log_benchmark_run


# Never cached: every run logs its own MLflow run.
@step(enable_cache=False)
def log_public_benchmarks(
    public_benchmark_results: BenchmarkResults, model: str
) -> Annotated[dict[str, str], "benchmark_run"]:
    """Log the scores to MLflow (metrics ``bench/<task>/<metric>``, per-item predictions as
    ``predictions/<task>.jsonl``) and end the run with the table."""
    if mlflow.active_run() is None:
        raise RuntimeError("log_public_benchmarks needs the MLflow experiment tracker of the stack "
                           "(run `make stack`, or give the step `experiment_tracker=`)")
    log_benchmark_run(public_benchmark_results, model)
    run, context = mlflow.active_run().info, get_step_context()
    # One print: `zenml pipeline run` shows it from the stored logs when the step ran in a pod.
    print("\n".join([
        *public_benchmark_results.table_lines(),
        f"MLflow run {run.run_id} (experiment {run.experiment_id}, tracking {mlflow.get_tracking_uri()})",
        f"Benchmarks of {model} in ZenML run {context.pipeline_run.name} ({context.pipeline_run.id})",
    ]))
    return {"mlflow_run_id": run.run_id, "mlflow_experiment_id": run.experiment_id, "model": model,
            "zenml_run": context.pipeline_run.name}

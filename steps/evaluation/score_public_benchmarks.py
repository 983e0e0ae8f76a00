from typing import Annotated

from zenml import log_metadata, step
from zenml.client import Client

from steps._workdir import scratch_dir
from timewarp.evaluation.lmms.results import BenchmarkResults, JudgeEndpoint


# Never cached: a registry alias (models:/NAME@champion) moves between runs, and a hub
# benchmark can change under its name.
@step(enable_cache=False)
def score_public_benchmarks(
    model: str,
    benchmarks: list[str],
    benchmark_roots: dict[str, str] | None = None,
    limit: int | None = None,
    frames_per_video: int = 8,
    batch_size: int = 4,
    judge_url: str | None = None,
    judge_api_key_env: str = "OPENAI_API_KEY",
) -> Annotated[BenchmarkResults, "public_benchmark_results"]:
    """``model`` (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, a model folder or a hub
    id) on lmms-eval tasks or groups ``benchmarks`` with lmms-eval's own task definitions and
    scoring, ``limit`` items per task; a benchmark with a root in ``benchmark_roots`` is read
    from that folder offline. A task's judge fallback uses ``judge_url`` (an
    OpenAI-compatible endpoint; its key from ``judge_api_key_env``) or is off."""
    from timewarp.evaluation.lmms.adapter import TimewarpLMM
    from timewarp.evaluation.lmms.tasks import run_benchmarks

    if model.startswith("models:/"):  # the registry is the stack's MLflow
        tracker = Client().active_stack.experiment_tracker
        if tracker is None:
            raise RuntimeError(f"{model} names the MLflow registry, but the active stack has no experiment tracker")
        tracker.configure_mlflow()
    judge = JudgeEndpoint(judge_url, judge_api_key_env) if judge_url else None
    adapter = TimewarpLMM(pretrained=model, frames_per_video=frames_per_video, batch_size=batch_size)
    results = run_benchmarks(adapter, list(benchmarks), benchmark_roots or {}, limit, scratch_dir("lmms-eval"), judge)
    log_metadata({"benchmarks": {"model": model, "items": results.item_counts, **results.flat_metrics()}})
    return results

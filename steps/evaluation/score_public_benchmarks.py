from typing import Annotated, Any

from zenml import log_metadata, step
from zenml.client import Client

from steps._workdir import scratch_dir
from timewarp.evaluation.lmms.results import BenchmarkResults, JudgeEndpoint
from timewarp.models.checkpoint import ModelCheckpoint


def _score(adapter: Any, label: str, benchmarks: list[str], benchmark_roots: dict[str, str] | None, limit: int | None,
           judge_url: str | None, judge_api_key_env: str) -> BenchmarkResults:
    from timewarp.evaluation.lmms.tasks import run_benchmarks

    judge = JudgeEndpoint(judge_url, judge_api_key_env) if judge_url else None
    results = run_benchmarks(adapter, list(benchmarks), benchmark_roots or {}, limit, scratch_dir("lmms-eval"), judge)
    log_metadata({"benchmarks": {"model": label, "items": results.item_counts, **results.flat_metrics()}})
    return results


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

    if model.startswith("models:/"):  # the registry is the stack's MLflow
        tracker = Client().active_stack.experiment_tracker
        if tracker is None:
            raise RuntimeError(f"{model} names the MLflow registry, but the active stack has no experiment tracker")
        tracker.configure_mlflow()
    adapter = TimewarpLMM(pretrained=model, frames_per_video=frames_per_video, batch_size=batch_size)
    return _score(adapter, model, benchmarks, benchmark_roots, limit, judge_url, judge_api_key_env)


# Never cached, as above: the benchmarks' hub copies can change under their names.
@step(enable_cache=False)
def score_checkpoint_public_benchmarks(
    checkpoint: ModelCheckpoint,
    benchmarks: list[str],
    benchmark_roots: dict[str, str] | None = None,
    limit: int | None = None,
    frames_per_video: int = 8,
    batch_size: int = 4,
    judge_url: str | None = None,
    judge_api_key_env: str = "OPENAI_API_KEY",
) -> Annotated[BenchmarkResults, "public_benchmark_results"]:
    """:func:`score_public_benchmarks` for a model a pipeline trained (a step's checkpoint)."""
    from timewarp.evaluation.lmms.adapter import TimewarpLMM

    model, processor, family = checkpoint.load()
    adapter = TimewarpLMM(model=model, processor=processor, family=family, frames_per_video=frames_per_video,
                          batch_size=batch_size)
    label = f"{checkpoint.kind} checkpoint {checkpoint.path}"
    return _score(adapter, label, benchmarks, benchmark_roots, limit, judge_url, judge_api_key_env)

from zenml import pipeline

from pipelines.preflight import check_run, require_experiment_tracker
from pipelines.reporting import reported
from pipelines.stages import tracker_name
from steps.evaluation import score_public_benchmarks
from steps.tracking import log_public_benchmarks


@reported
@pipeline
def timewarp_evaluate(
    model: str = "models:/timewarp-explicit@champion",
    benchmarks: tuple[str, ...] = ("tempcompass", "vinoground", "tvbench", "mvbench"),
    benchmark_roots: dict[str, str] | None = None,
    limit: int | None = None,
    frames_per_video: int = 8,
    batch_size: int = 4,
    judge_url: str | None = None,
    judge_api_key_env: str = "OPENAI_API_KEY",
):
    """A model on public temporal benchmarks through lmms-eval's own task definitions and
    scoring: ``model`` is ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` (the registry),
    a model folder (one of our checkpoints, full or LoRA, or any HF-format model) or a hub
    id; ``benchmarks`` lmms-eval task or group names; ``benchmark_roots`` benchmark ->
    a local folder in its Hugging Face layout (read offline; unset: the hub, which needs the
    network and, for gated sets, ``HF_TOKEN``); ``limit`` items per task. A task's judge
    fallback uses ``judge_url`` (an OpenAI-compatible endpoint, key from
    ``judge_api_key_env``) or is off. Metrics ``bench/<task>/<metric>`` and the per-item
    predictions go to the MLflow experiment ``timewarp_evaluate``; the table is printed.
    """
    if not benchmarks:
        raise ValueError("benchmarks is empty: name lmms-eval tasks or groups, e.g. [tvbench]")
    require_experiment_tracker("timewarp_evaluate")
    check_run(gpu_steps=["score_public_benchmarks"])
    results = score_public_benchmarks(model, list(benchmarks), benchmark_roots, limit, frames_per_video, batch_size,
                                      judge_url, judge_api_key_env)
    log_public_benchmarks.with_options(experiment_tracker=tracker_name())(results, model)
    return results

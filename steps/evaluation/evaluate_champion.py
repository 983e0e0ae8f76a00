from typing import Annotated

from zenml import log_metadata, step
from zenml.client import Client

from timewarp.data.corpus import VideoCorpus
from timewarp.evaluation.results import ModelEvaluation, benchmark_version
from timewarp.evaluation.scoring import ScoringConfig, score_benchmarks
from timewarp.generation.datasets import MCQBenchmark
from timewarp.models.placement import placement_of
from timewarp.tracking.champion import CHAMPION_KIND, load_champion


# Never cached: the champion is whatever the registry holds when the run gets here.
@step(enable_cache=False)
def evaluate_champion(
    normal_benchmark: MCQBenchmark,
    shuffled_benchmark: MCQBenchmark,
    corpus: VideoCorpus,
    frames_per_video: int,
    scorers: list[str],
    registered_model_name: str,
    batch_size: int = ScoringConfig.batch_size,
) -> Annotated[ModelEvaluation, "champion_evaluation"]:
    """Re-score the registry's current champion of ``registered_model_name`` on this run's
    benchmark with this run's scorers, so the promotion gate compares candidate and
    champion on identical items. No champion yet: an evaluation without results."""
    benchmarks = (normal_benchmark, shuffled_benchmark)
    version = benchmark_version(*benchmarks)
    tracker = Client().active_stack.experiment_tracker
    if tracker is None:
        raise RuntimeError("evaluate_champion reads the MLflow registry: the active stack has no experiment tracker")
    tracker.configure_mlflow()
    champion = load_champion(registered_model_name)
    if champion is None:
        print(f"no champion of {registered_model_name} yet: nothing to re-score")
        log_metadata({"champion": {"version": "none"}})
        return ModelEvaluation(CHAMPION_KIND, "", version, {})
    placement = placement_of(champion.model)
    config = ScoringConfig(frames_per_video=frames_per_video, batch_size=batch_size, scorers=tuple(scorers))
    results = score_benchmarks(champion.model, champion.processor, champion.family, benchmarks, corpus, config)
    evaluation = ModelEvaluation(CHAMPION_KIND, champion.uri, version, results)
    scores = {scorer: {m: round(v, 6) for m, v in evaluation.metrics(scorer).items() if "/" not in m}
              for scorer in results}
    log_metadata({"champion": {"version": champion.version, "uri": champion.uri, "device": placement.device,
                               "scores": scores}})
    print(f"re-scored the champion {registered_model_name} version {champion.version} on benchmark {version} "
          f"with {', '.join(scorers)} ({placement}): "
          + "; ".join(f"{s} {m} {v:.1%}" for s, values in scores.items() for m, v in values.items()
                      if m.startswith("accuracy_")))
    return evaluation

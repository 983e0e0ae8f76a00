from typing import Annotated

from zenml import log_metadata, step

from timewarp.data.corpus import VideoCorpus
from timewarp.evaluation.results import ModelEvaluation, benchmark_version
from timewarp.evaluation.scoring import ScoringConfig, score_benchmarks
from timewarp.generation.datasets import MCQBenchmark
from timewarp.models.checkpoint import ModelCheckpoint
from timewarp.models.placement import placement_of


@step
def evaluate_model(
    model: ModelCheckpoint,
    normal_benchmark: MCQBenchmark,
    shuffled_benchmark: MCQBenchmark,
    corpus: VideoCorpus,
    frames_per_video: int,
    scorers: list[str],
    batch_size: int = ScoringConfig.batch_size,
) -> Annotated[ModelEvaluation, "evaluation"]:
    """Normal benchmark on the original frames, shuffled benchmark on the shuffled frames,
    with each scorer (greedy generation + option extraction; option log-likelihood), on the
    GPU when there is one (see :meth:`ModelCheckpoint.load`), ``batch_size`` items per
    forward. The device and precision used are logged and recorded as step metadata."""
    loaded, processor, family = model.load()
    placement = placement_of(loaded)
    print(f"evaluating the {model.kind} model {model.path} on {placement}, {batch_size} items per batch")
    log_metadata({"placement": {"device": placement.device, "dtype": placement.dtype, "batch_size": batch_size}})
    config = ScoringConfig(frames_per_video=frames_per_video, batch_size=batch_size, scorers=tuple(scorers))
    benchmarks = (normal_benchmark, shuffled_benchmark)
    results = score_benchmarks(loaded, processor, family, benchmarks, corpus, config)
    return ModelEvaluation(model.kind, model.path, benchmark_version(*benchmarks), results)

from typing import Annotated, Tuple

from zenml import step

from steps.generation._generator import corpus_uri, log_generation_stats, step_generator
from timewarp.data.corpus import VideoCorpus
from timewarp.generation.config import GeneratorConfig
from timewarp.generation.datasets import GenerationLog, MCQBenchmark
from timewarp.generation.splits import VideoSplit


@step
def generate_benchmark(
    corpus: VideoCorpus, video_split: VideoSplit, generator: GeneratorConfig, mcq_per_video: int, seed: int
) -> Tuple[
    Annotated[MCQBenchmark, "normal_benchmark"],
    Annotated[MCQBenchmark, "shuffled_benchmark"],
    Annotated[GenerationLog, "benchmark_generation_log"],
]:
    """Four-option questions on benchmark videos; the shuffled variant re-answers them for
    the shuffled scene order."""
    backend = step_generator(generator, seed)
    held_out = set(video_split.benchmark_ids)
    text = backend.benchmark_text([v for v in corpus.videos if v.video_id in held_out], mcq_per_video)
    log_generation_stats(backend)
    media_root, description = corpus_uri(), backend.describe()
    normal = MCQBenchmark(text.items, "normal", media_root, description)
    shuffled = MCQBenchmark(text.items, "shuffled", media_root, description)
    return normal, shuffled, GenerationLog(text.rejections)

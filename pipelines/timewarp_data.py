from zenml import pipeline

from steps.data import export_corpus, generate_sample, locate_shards, merge_corpus, prepare_videos
from steps.generation import check_data_quality, export_text, generate_benchmark, generate_training_text, split_videos
from timewarp.generation.config import GeneratorConfig


@pipeline
def timewarp_data(
    finevideo_root: str | None = None,
    max_videos: int | None = None,
    max_seconds: float = 105.0,
    min_scenes: int = 2,
    seed: int = 0,
    frames_per_video: int = 8,
    render_shuffled_videos: bool = False,
    export_dir: str | None = None,
    sample_videos: int = 24,
    integer_timestamps: bool = False,
    shard_groups: int = 1,
    workers: int = 1,
    generator: GeneratorConfig = GeneratorConfig(),
    questions_per_video: int = 3,
    mcq_per_video: int = 3,
    benchmark_fraction: float = 0.25,
    paper_overlap: bool = False,
):
    """FineVideo shards -> scenes -> shuffled scene order -> frames and merged captions ->
    SFT pairs, explicit preference pairs and the normal / shuffled benchmarks.

    With no ``finevideo_root`` it runs on a generated FineVideo miniature.
    """
    shards = locate_shards(finevideo_root) if finevideo_root else generate_sample(sample_videos, seed)
    parts, logs = [], []
    for group in range(shard_groups):
        part, log = prepare_videos(
            shards,
            max_videos=max_videos,
            max_seconds=max_seconds,
            min_scenes=min_scenes,
            integer_timestamps=integer_timestamps,
            seed=seed,
            frames_per_video=frames_per_video,
            render_shuffled_videos=render_shuffled_videos,
            group=group,
            groups=shard_groups,
            workers=workers,
            id=f"prepare_videos_{group}" if shard_groups > 1 else None,
        )
        parts.append(part)
        logs.append(log)
    corpus, rejections = merge_corpus(parts, logs)

    video_split = split_videos(corpus, benchmark_fraction, seed, paper_overlap)
    sft, preferences, training_log = generate_training_text(corpus, video_split, generator, questions_per_video, seed)
    normal, shuffled, benchmark_log = generate_benchmark(corpus, video_split, generator, mcq_per_video, seed)
    check_data_quality(sft, preferences, normal, training_log, benchmark_log, video_split)

    if export_dir:
        export_corpus(corpus, rejections, export_dir)
        export_text(sft, preferences, normal, shuffled, export_dir)
    return sft, preferences, normal, shuffled

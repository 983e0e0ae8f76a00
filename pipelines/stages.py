"""Stages shared by the pipelines: plain functions that call steps, so each pipeline
reads like a table of contents."""

from steps.data import export_corpus, generate_sample, locate_shards, merge_corpus, prepare_videos
from steps.generation import check_data_quality, export_text, generate_benchmark, generate_training_text, split_videos
from timewarp.generation.config import GeneratorConfig


def data_stage(
    finevideo_root: str | None,
    max_videos: int | None,
    max_seconds: float,
    min_scenes: int,
    seed: int,
    frames_per_video: int,
    render_shuffled_videos: bool,
    export_dir: str | None,
    sample_videos: int,
    integer_timestamps: bool,
    shard_groups: int,
    workers: int,
    generator: GeneratorConfig,
    questions_per_video: int,
    mcq_per_video: int,
    benchmark_fraction: float,
    paper_overlap: bool,
    sample_preset: str = "small",
):
    """Shards -> corpus -> split -> SFT/preference pairs and benchmarks -> quality gate."""
    shards = locate_shards(finevideo_root) if finevideo_root else generate_sample(sample_videos, seed, sample_preset)
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
    quality = check_data_quality(sft, preferences, normal, training_log, benchmark_log, video_split)

    if export_dir:
        export_corpus(corpus, rejections, export_dir)
        export_text(sft, preferences, normal, shuffled, export_dir)
    return corpus, sft, preferences, normal, shuffled, quality

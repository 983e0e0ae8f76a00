"""The data stage alone, so that timewarp_data imports no training or evaluation steps."""

from __future__ import annotations

from typing import Any, NamedTuple

from steps.data import export_corpus, generate_sample, locate_shards, merge_corpus, prepare_videos
from steps.generation import check_data_quality, export_text, generate_benchmark, generate_training_text, split_videos
from timewarp.run_config import DataSettings, GenerationSettings


class DataArtifacts(NamedTuple):
    corpus: Any
    sft: Any
    preferences: Any
    normal: Any
    shuffled: Any
    quality: Any
    split: Any


def data_stage(data: DataSettings, generation: GenerationSettings) -> DataArtifacts:
    """Shards -> corpus -> split -> SFT/preference pairs and benchmarks -> quality gate."""
    seed = data.seed
    shards = (locate_shards(data.finevideo_root) if data.finevideo_root
              else generate_sample(data.sample_videos, seed, data.sample_preset))
    parts, logs = [], []
    for group in range(data.shard_groups):
        part, log = prepare_videos(
            shards,
            max_videos=data.max_videos,
            max_seconds=data.max_seconds,
            min_scenes=data.min_scenes,
            integer_timestamps=data.integer_timestamps,
            seed=seed,
            frames_per_video=data.frames_per_video,
            render_shuffled_videos=data.render_shuffled_videos,
            group=group,
            groups=data.shard_groups,
            workers=data.workers,
            id=f"prepare_videos_{group}" if data.shard_groups > 1 else None,
        )
        parts.append(part)
        logs.append(log)
    corpus, rejections = merge_corpus(parts, logs)

    video_split = split_videos(corpus, data.benchmark_fraction, seed, data.paper_overlap)
    generator = generation.generator
    sft, preferences, training_log = generate_training_text(
        corpus, video_split, generator, generation.questions_per_video, seed)
    normal, shuffled, benchmark_log = generate_benchmark(corpus, video_split, generator, generation.mcq_per_video, seed)
    quality = check_data_quality(sft, preferences, normal, training_log, benchmark_log, video_split)

    if data.export_dir:
        export_corpus(corpus, rejections, data.export_dir)
        export_text(sft, preferences, normal, shuffled, data.export_dir)
    return DataArtifacts(corpus, sft, preferences, normal, shuffled, quality, video_split)

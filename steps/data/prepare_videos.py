from typing import Annotated, Tuple

from zenml import step

from steps._workdir import scratch_dir
from timewarp.data.corpus import RejectionLog, VideoCorpus
from timewarp.data.ingest import ShardSet
from timewarp.data.prepare import PrepareConfig, prepare_corpus


@step
def prepare_videos(
    shards: ShardSet,
    max_videos: int | None,
    max_seconds: float,
    min_scenes: int,
    integer_timestamps: bool,
    seed: int,
    frames_per_video: int,
    render_shuffled_videos: bool,
    group: int = 0,
    groups: int = 1,
    workers: int | None = None,
) -> Tuple[Annotated[VideoCorpus, "corpus_part"], Annotated[RejectionLog, "rejections_part"]]:
    """Scenes, decode probe, shuffle and frames for one shard group, with ``workers``
    processes (unset: one per core the step may use)."""
    config = PrepareConfig(
        max_seconds=max_seconds,
        min_scenes=min_scenes,
        integer_timestamps=integer_timestamps,
        seed=seed,
        frames_per_video=frames_per_video,
        render_shuffled_videos=render_shuffled_videos,
    )
    corpus, rejections = prepare_corpus(
        shards, scratch_dir("part"), config, max_videos=max_videos, group=group, groups=groups, workers=workers
    )
    return corpus, rejections

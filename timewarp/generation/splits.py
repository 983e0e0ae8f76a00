"""Which videos feed training and which the benchmark."""

from __future__ import annotations

from dataclasses import dataclass

from timewarp.seeding import stable_int


@dataclass(frozen=True)
class VideoSplit:
    train_ids: list[str]
    benchmark_ids: list[str]
    # True only when reproducing the paper, whose benchmark videos were also trained on.
    paper_overlap: bool = False

    def leaked_ids(self) -> list[str]:
        return sorted(set(self.train_ids) & set(self.benchmark_ids))


def _unit(seed: int, video_id: str) -> float:
    return stable_int("split", seed, video_id, bits=64) / 2**64


def split_videos(
    video_ids: list[str], benchmark_fraction: float = 0.25, seed: int = 0, paper_overlap: bool = False
) -> VideoSplit:
    """Split by a hash of (seed, video id): a video keeps its side when the corpus grows.

    With ``paper_overlap`` every video is used for both, as in the paper's release.
    """
    if not 0.0 < benchmark_fraction < 1.0:
        raise ValueError("benchmark_fraction must be between 0 and 1")
    ids = sorted(set(video_ids))
    if paper_overlap:
        return VideoSplit(ids, ids, paper_overlap=True)
    if len(ids) < 2:
        raise ValueError(
            f"need at least 2 videos to split into training and benchmark videos, got {len(ids)}: prepare more "
            "(max_videos, sample_videos, or the data stage's rejections say why rows were dropped), or set "
            "paper_overlap to use every video for both"
        )
    score = {video_id: _unit(seed, video_id) for video_id in ids}
    benchmark = [v for v in ids if score[v] < benchmark_fraction]
    # Both sides non-empty: move the extreme video when a small corpus leaves one empty.
    if not benchmark:
        benchmark = [min(ids, key=score.__getitem__)]
    if len(benchmark) == len(ids):
        benchmark.remove(max(ids, key=score.__getitem__))
    train = [v for v in ids if v not in set(benchmark)]
    return VideoSplit(train, benchmark)

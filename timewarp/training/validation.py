"""The SFT stage's validation split: whole training videos held out by a stable hash, so
that early stopping watches a loss on videos it does not train on (never the benchmark's,
which are not in the SFT examples at all).

This module must not import zenml.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from timewarp.seeding import stable_int

__all__ = ["ValidationSplit", "validation_split"]


@dataclass(frozen=True)
class ValidationSplit:
    train: list[Any]
    validation: list[Any]
    validation_videos: int

    def sizes(self) -> dict[str, int]:
        """What the run records about the split."""
        return {
            "validation/examples": len(self.validation), "validation/videos": self.validation_videos,
            "validation/train_examples": len(self.train),
        }


def validation_split(examples: list[Any], fraction: float, seed: int) -> ValidationSplit:
    """``examples`` (rows, each with a ``"video_id"``) split by video: a video is held out when a
    hash of (seed, video id) falls below ``fraction``, so a video keeps its side when the
    data grows, and the split is the same on every machine. At least one video lands on
    each side."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction}")
    videos = sorted({example["video_id"] for example in examples})
    if len(videos) < 2:
        raise ValueError(
            f"a validation split needs examples of at least 2 videos, got {len(videos)}: "
            "add videos, or set validation_fraction: 0 and early_stopping_patience: null"
        )
    score = {video: stable_int("validation", seed, video, bits=64) / 2**64 for video in videos}
    ranked = sorted(videos, key=lambda video: (score[video], video))
    held = {video for video in videos if score[video] < fraction}
    held = held or {ranked[0]}
    if len(held) == len(videos):
        held.discard(ranked[-1])
    train = [example for example in examples if example["video_id"] not in held]
    validation = [example for example in examples if example["video_id"] in held]
    return ValidationSplit(train, validation, len(held))

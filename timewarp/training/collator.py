"""Collators turning dataset rows (video id + texts) into model batches via a family adapter.

Rows stay light (ids and strings) and frames are read and processed per batch, as TRL
does for vision data: processing every video upfront would hold all pixel tensors at once.

- :class:`VideoPreferenceCollator` (TRL ``DPOTrainer``): rows ``prompt``, ``chosen``,
  ``rejected`` and ``video_id`` (optionally ``ref_chosen_logps``/``ref_rejected_logps``);
  the batch holds all chosen sequences, then all rejected ones, each with its row's video,
  which is the order DPOTrainer splits on.
- :class:`VideoSFTCollator` (TRL ``SFTTrainer``): rows ``prompt``, ``completion`` and
  ``video_id``; ``labels`` are -100 except on the answer tokens.

This module must not import zenml.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from timewarp.data.corpus import PreparedVideo, VideoCorpus
from timewarp.generation.datasets import PreferenceDataset, SFTDataset
from timewarp.models.base import VideoLLMFamily, VideoSample
from timewarp.models.batches import truncate_batch
from timewarp.models.frames import select_frames

__all__ = [
    "FrameSource",
    "VideoPreferenceCollator",
    "VideoSFTCollator",
    "preference_rows",
    "sft_rows",
]


def preference_rows(dataset: PreferenceDataset) -> list[dict[str, Any]]:
    """The dataset's pairs as trainer rows (``prompt`` is the question)."""
    return [
        {"id": p.id, "video_id": p.video_id, "prompt": p.question, "chosen": p.chosen, "rejected": p.rejected}
        for p in dataset.pairs
    ]


def sft_rows(dataset: SFTDataset) -> list[dict[str, Any]]:
    return [{"id": p.id, "video_id": p.video_id, "prompt": p.question, "completion": p.answer} for p in dataset.pairs]


@dataclass
class FrameSource:
    """True-order frames of a corpus's videos, ``frames_per_video`` spread evenly over the
    stored frames (all of them when fewer are stored). Keeps the last few videos in memory:
    a batch repeats each video for its chosen and rejected rows."""

    corpus: VideoCorpus
    frames_per_video: int | None = None
    cache_size: int = 32
    _videos: dict[str, PreparedVideo] = field(init=False, repr=False)
    _cache: OrderedDict[str, np.ndarray] = field(init=False, repr=False, default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self._videos = {video.video_id: video for video in self.corpus.videos}

    def __call__(self, video_id: str) -> np.ndarray:
        cached = self._cache.get(video_id)
        if cached is not None:
            self._cache.move_to_end(video_id)
            return cached
        try:
            video = self._videos[video_id]
        except KeyError:
            raise KeyError(f"video {video_id!r} is not in the corpus at {self.corpus.location}") from None
        frames = select_frames(self.corpus.frames(video), self.frames_per_video)
        self._cache[video_id] = frames
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return frames


@dataclass
class VideoPreferenceCollator:
    """Rows -> DPO batch: ``input_ids``, ``attention_mask``, ``completion_mask`` and the
    family's vision tensors for [chosen rows..., rejected rows...], plus
    ``ref_chosen_logps``/``ref_rejected_logps`` (one per pair) when the rows carry them."""

    family: VideoLLMFamily
    processor: Any
    frames: Callable[[str], np.ndarray]  # video id -> frames to show (a FrameSource)
    max_length: int | None = None

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        videos = [self.frames(row["video_id"]) for row in rows]
        chosen = [VideoSample(v, row["prompt"], row["chosen"]) for v, row in zip(videos, rows)]
        rejected = [VideoSample(v, row["prompt"], row["rejected"]) for v, row in zip(videos, rows)]
        batch = truncate_batch(self.family.encode(self.processor, chosen + rejected), self.max_length)
        for key in ("ref_chosen_logps", "ref_rejected_logps"):
            if key in rows[0]:
                batch[key] = torch.tensor([float(row[key]) for row in rows], dtype=torch.float32)
        return batch


@dataclass
class VideoSFTCollator:
    """Rows -> SFT batch: ``input_ids``, ``attention_mask``, ``labels`` (answer tokens only)
    and the family's vision tensors."""

    family: VideoLLMFamily
    processor: Any
    frames: Callable[[str], np.ndarray]  # video id -> frames to show (a FrameSource)
    max_length: int | None = None

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        samples = [VideoSample(self.frames(row["video_id"]), row["prompt"], row["completion"]) for row in rows]
        batch = truncate_batch(self.family.encode(self.processor, samples), self.max_length)
        completion_mask = batch.pop("completion_mask")
        batch["labels"] = batch["input_ids"].masked_fill(completion_mask == 0, -100)
        return batch

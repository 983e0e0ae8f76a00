"""Accuracy reports: overall, per question type, normal vs shuffled, consistency, and
model-vs-model differences, with bootstrap intervals clustered by video.

A video gives several items (questions, and its normal and shuffled variants), and items of
one video succeed or fail together more often than items of different videos; resampling
items as if independent makes intervals too narrow. The bootstrap therefore resamples
VIDEOS with replacement and recomputes the item-level mean over the chosen videos' items.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ItemResult:
    """One benchmark item scored on one variant."""

    item_id: str
    question_type: str
    variant: str  # normal | shuffled
    correct: bool
    predicted_index: int | None
    answer_index: int
    video_id: str = ""  # the bootstrap's cluster; results stored before it was kept: none

    @property
    def cluster(self) -> str:
        """The unit the bootstrap resamples: the video, else (no video recorded) the item."""
        return self.video_id or self.item_id


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    n: int


def clustered_bootstrap(
    values: np.ndarray, clusters: list[str], resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> Estimate:
    """The mean of ``values`` with a percentile interval from resampling whole clusters
    (videos): each resample draws as many clusters as there are, with replacement, and
    takes the mean over all their values."""
    if values.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    if len(clusters) != values.size:
        raise ValueError(f"{values.size} values but {len(clusters)} cluster labels")
    labels, index = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    sums = np.bincount(index, weights=values, minlength=labels.size)
    counts = np.bincount(index, minlength=labels.size).astype(float)
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, labels.size, size=(resamples, labels.size))
    means = sums[drawn].sum(axis=1) / counts[drawn].sum(axis=1)
    tail = (1 - confidence) / 2 * 100
    return Estimate(float(values.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail)),
                    int(values.size))


def accuracy(results: list[ItemResult], *, resamples: int = 2000, seed: int = 0, confidence: float = 0.95) -> Estimate:
    return clustered_bootstrap(np.array([r.correct for r in results], dtype=float), [r.cluster for r in results],
                               resamples, seed, confidence)


def consistency(results: list[ItemResult], **kwargs) -> Estimate:
    """Share of questions answered correctly on BOTH the normal and the shuffled video."""
    by_item: dict[str, dict[str, ItemResult]] = defaultdict(dict)
    for r in results:
        by_item[r.item_id][r.variant] = r
    pairs = [v for v in by_item.values() if {"normal", "shuffled"} <= set(v)]
    both = np.array([v["normal"].correct and v["shuffled"].correct for v in pairs], dtype=float)
    return clustered_bootstrap(both, [v["normal"].cluster for v in pairs], kwargs.get("resamples", 2000),
                               kwargs.get("seed", 0), kwargs.get("confidence", 0.95))


def paired_difference(
    base: list[ItemResult], other: list[ItemResult], *, resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> Estimate:
    """Accuracy of ``other`` minus ``base`` on the same items, with a paired bootstrap
    interval: videos resampled, both models' results on a drawn video's items kept together."""
    base_by = {(r.item_id, r.variant): r.correct for r in base}
    pairs = [r for r in other if (r.item_id, r.variant) in base_by]
    if len(pairs) != len(base) or len(pairs) != len(other):
        missing = len(base) + len(other) - 2 * len(pairs)
        raise ValueError(
            f"paired comparison needs both models scored on the same (item, variant) pairs: {len(base)} vs "
            f"{len(other)} results, {missing} without a partner; score both on one benchmark"
        )
    differences = np.array([float(r.correct) - float(base_by[(r.item_id, r.variant)]) for r in pairs])
    return clustered_bootstrap(differences, [r.cluster for r in pairs], resamples, seed, confidence)


def summary(results: list[ItemResult], **kwargs) -> dict[str, Estimate]:
    """Accuracy overall, per variant, per (variant, question type), and consistency."""
    out = {"overall": accuracy(results, **kwargs), "consistency": consistency(results, **kwargs)}
    for variant in sorted({r.variant for r in results}):
        chosen = [r for r in results if r.variant == variant]
        out[variant] = accuracy(chosen, **kwargs)
        for question_type in sorted({r.question_type for r in chosen}):
            out[f"{variant}/{question_type}"] = accuracy([r for r in chosen if r.question_type == question_type], **kwargs)
    return out

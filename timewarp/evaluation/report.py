"""Accuracy reports: overall, per question type, normal vs shuffled, consistency, and
model-vs-model differences with bootstrap intervals over items."""

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


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    n: int


def _bootstrap(values: np.ndarray, resamples: int, seed: int, confidence: float) -> Estimate:
    if values.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    return Estimate(float(values.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail)), int(values.size))


def accuracy(results: list[ItemResult], *, resamples: int = 2000, seed: int = 0, confidence: float = 0.95) -> Estimate:
    return _bootstrap(np.array([r.correct for r in results], dtype=float), resamples, seed, confidence)


def consistency(results: list[ItemResult], **kwargs) -> Estimate:
    """Share of questions answered correctly on BOTH the normal and the shuffled video."""
    by_item: dict[str, dict[str, bool]] = defaultdict(dict)
    for r in results:
        by_item[r.item_id][r.variant] = r.correct
    both = [v["normal"] and v["shuffled"] for v in by_item.values() if {"normal", "shuffled"} <= set(v)]
    return _bootstrap(np.array(both, dtype=float), kwargs.get("resamples", 2000), kwargs.get("seed", 0), kwargs.get("confidence", 0.95))


def paired_difference(
    base: list[ItemResult], other: list[ItemResult], *, resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> Estimate:
    """Accuracy of ``other`` minus ``base`` on the same items, with a paired bootstrap
    interval (items resampled jointly)."""
    base_by = {(r.item_id, r.variant): r.correct for r in base}
    pairs = [(float(r.correct), float(base_by[(r.item_id, r.variant)])) for r in other if (r.item_id, r.variant) in base_by]
    if len(pairs) != len(base) or len(pairs) != len(other):
        raise ValueError("both result lists must cover the same (item, variant) pairs")
    return _bootstrap(np.array([a - b for a, b in pairs]), resamples, seed, confidence)


def summary(results: list[ItemResult], **kwargs) -> dict[str, Estimate]:
    """Accuracy overall, per variant, per (variant, question type), and consistency."""
    out = {"overall": accuracy(results, **kwargs), "consistency": consistency(results, **kwargs)}
    for variant in sorted({r.variant for r in results}):
        chosen = [r for r in results if r.variant == variant]
        out[variant] = accuracy(chosen, **kwargs)
        for question_type in sorted({r.question_type for r in chosen}):
            out[f"{variant}/{question_type}"] = accuracy([r for r in chosen if r.question_type == question_type], **kwargs)
    return out

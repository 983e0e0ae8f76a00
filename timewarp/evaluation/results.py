"""Evaluation results of one model, and the comparison of a trained model with its base."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from timewarp.evaluation.report import Estimate, ItemResult, accuracy, consistency, paired_difference
from timewarp.generation.datasets import MCQBenchmark

VARIANTS = ("normal", "shuffled")


def benchmark_version(*benchmarks: MCQBenchmark) -> str:
    """The benchmark's identity by content (its variants' items: questions, options,
    answers, videos), so two runs that generate the same items name the same benchmark."""
    digest = hashlib.sha256()
    for benchmark in benchmarks:
        digest.update(json.dumps({"variant": benchmark.variant, "items": [asdict(i) for i in benchmark.items]},
                                 sort_keys=True, default=str).encode())
    return "bench-" + digest.hexdigest()[:16]


@dataclass
class ModelEvaluation:
    """Per-item predictions of one model on the normal and shuffled benchmarks, per scorer."""

    model_kind: str  # base | SFT | DPO | SFT-cont (the continued-SFT control)
    model_path: str
    benchmark_version: str  # :func:`benchmark_version` of the benchmarks scored
    results: dict[str, list[ItemResult]] = field(default_factory=dict)  # scorer -> items

    def metrics(self, scorer: str) -> dict[str, float]:
        items = self.results[scorer]
        values = {"accuracy": accuracy(items).value}
        values.update({f"accuracy_{v}": accuracy([r for r in items if r.variant == v]).value for v in VARIANTS})
        values["consistency"] = consistency(items).value
        for variant in VARIANTS:
            for kind in sorted({r.question_type for r in items if r.variant == variant}):
                chosen = [r for r in items if r.variant == variant and r.question_type == kind]
                values[f"accuracy_{variant}/{kind}"] = accuracy(chosen).value
        return values


@dataclass
class ComparisonRow:
    scorer: str
    metric: str  # accuracy_normal | accuracy_shuffled | consistency
    base: Estimate
    trained: Estimate
    difference: Estimate  # trained - base, paired bootstrap clustered by video


@dataclass
class ComparisonReport:
    """Base vs trained on the same benchmark version, with 95% bootstrap intervals
    clustered by video."""

    benchmark_version: str
    base_kind: str
    trained_kind: str
    rows: list[ComparisonRow]

    def row(self, scorer: str, metric: str) -> ComparisonRow:
        return next(r for r in self.rows if r.scorer == scorer and r.metric == metric)

    def lines(self) -> list[str]:
        """Closing lines for a terminal: one per scorer and metric."""
        def interval(e: Estimate, sign: str = "") -> str:
            return f"{e.value:{sign}6.1%} [{e.low:{sign}.1%}, {e.high:{sign}.1%}]"

        return [
            f"{r.scorer:>11} {r.metric:<18} {self.base_kind} {interval(r.base)}  {self.trained_kind} "
            f"{interval(r.trained)}  {self.trained_kind} - {self.base_kind} {interval(r.difference, '+')}"
            for r in self.rows
        ]

    def to_dict(self) -> dict:
        return asdict(self)


def compare(base: ModelEvaluation, trained: ModelEvaluation, *, seed: int = 0) -> ComparisonReport:
    if base.benchmark_version != trained.benchmark_version:
        raise ValueError(
            f"models were scored on different benchmarks ({base.benchmark_version} vs {trained.benchmark_version})"
        )
    rows = []
    for scorer in sorted(set(base.results) & set(trained.results)):
        for variant in VARIANTS:
            b = [r for r in base.results[scorer] if r.variant == variant]
            t = [r for r in trained.results[scorer] if r.variant == variant]
            rows.append(
                ComparisonRow(scorer, f"accuracy_{variant}", accuracy(b, seed=seed), accuracy(t, seed=seed),
                              paired_difference(b, t, seed=seed))
            )
        both_b, both_t = base.results[scorer], trained.results[scorer]
        rows.append(_consistency_row(scorer, both_b, both_t, seed))
    return ComparisonReport(base.benchmark_version, base.model_kind, trained.model_kind, rows)


def _consistency_row(scorer: str, base: list[ItemResult], trained: list[ItemResult], seed: int) -> ComparisonRow:
    """Consistency as a per-question 0/1 (both variants right), compared pairwise."""

    def per_question(items: list[ItemResult]) -> list[ItemResult]:
        by_id: dict[str, dict[str, ItemResult]] = {}
        for r in items:
            by_id.setdefault(r.item_id, {})[r.variant] = r
        return [
            ItemResult(i, v["normal"].question_type, "both", v["normal"].correct and v["shuffled"].correct, None, 0,
                       v["normal"].video_id)
            for i, v in sorted(by_id.items()) if set(v) >= set(VARIANTS)
        ]

    b, t = per_question(base), per_question(trained)
    return ComparisonRow(scorer, "consistency", accuracy(b, seed=seed), accuracy(t, seed=seed), paired_difference(b, t, seed=seed))

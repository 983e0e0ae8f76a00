"""What a public-benchmark run returns, without importing lmms-eval (the materializer and
the MLflow logging read it in processes that never score).

This module must not import zenml.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

__all__ = ["BenchmarkResults", "ItemPrediction", "JudgeEndpoint"]


@dataclass(frozen=True)
class JudgeEndpoint:
    """An OpenAI-compatible chat-completions endpoint for tasks that fall back to a judge;
    the key is read from the environment variable ``api_key_env`` (never stored here)."""

    url: str
    api_key_env: str = "OPENAI_API_KEY"


@dataclass(frozen=True)
class ItemPrediction:
    task: str
    doc_id: int
    target: str
    prediction: str
    #: The task's per-item score (e.g. 1.0/0.0 for ``tvbench_acc``), by metric name.
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchmarkResults:
    #: leaf task or group -> metric (lmms-eval's ``<metric>,<filter>`` key without the
    #: filter) -> value, as lmms-eval aggregated it.
    metrics: dict[str, dict[str, float]]
    predictions: list[ItemPrediction]
    #: leaf task -> number of items scored.
    item_counts: dict[str, int]
    lmms_eval_version: str
    #: task -> why it was not scored (e.g. a judge-only task with the judge off).
    skipped: dict[str, str] = field(default_factory=dict)

    def flat_metrics(self) -> dict[str, float]:
        """``bench/<task>/<metric>`` -> value (the MLflow metric names); NaN left out."""
        return {f"bench/{task}/{metric}": value for task, values in sorted(self.metrics.items())
                for metric, value in sorted(values.items()) if not math.isnan(value)}

    def predictions_jsonl(self) -> dict[str, str]:
        """task -> its per-item predictions, one JSON object per line."""
        by_task: dict[str, list[str]] = {}
        for item in self.predictions:
            by_task.setdefault(item.task, []).append(json.dumps(asdict(item)))
        return {task: "\n".join(lines) + "\n" for task, lines in sorted(by_task.items())}

    def table_lines(self) -> list[str]:
        """One line per task and metric: the value, and the items scored for a leaf task."""
        lines = [f"{'task':<32} {'metric':<24} {'value':>8} {'items':>6}"]
        for task, values in sorted(self.metrics.items()):
            for metric, value in sorted(values.items()):
                count = self.item_counts.get(task)
                lines.append(f"{task:<32} {metric:<24} {value:>8.2f} {count if count is not None else '':>6}")
        lines += [f"{task:<32} not scored: {why}" for task, why in sorted(self.skipped.items())]
        lines.append(f"lmms-eval {self.lmms_eval_version}; values as the task reports them (some in percent)")
        return lines

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> BenchmarkResults:
        return cls({task: dict(metrics) for task, metrics in values["metrics"].items()},
                   [ItemPrediction(**item) for item in values["predictions"]],
                   dict(values["item_counts"]), values["lmms_eval_version"], dict(values.get("skipped", {})))

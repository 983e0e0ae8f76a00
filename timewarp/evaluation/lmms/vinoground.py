"""Vinoground scored over the groups a run holds, by lmms-eval's own rule.

lmms-eval 0.7.3's ``vinoground`` task reads rows, videos and prompts, and marks a reply
right when its first character is the item's ``GT`` (case-insensitive); a group's text
score needs its pos and neg text items right, its video score both video items, its group
score all four. Its aggregator, though, sizes its table to 500 groups (it fails on any
other set) and returns the three scores as one tuple under ``vinoground_score``, which no
metric table can hold. :func:`task_override` keeps the task and its ``process_results``
and replaces only the aggregation:

- the denominator is the groups the run holds (all 500 on the full benchmark, where the
  numbers equal lmms-eval's), a group's missing item counting as wrong as in lmms-eval;
- the three scores are three metrics, ``vinoground_text_score``,
  ``vinoground_video_score`` and ``vinoground_group_score`` (percent, as lmms-eval's);
- an empty reply is wrong (lmms-eval's ``pred[0]`` would fail on it).

This module must not import zenml.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["CACHE_DIR", "METRICS", "task_override"]

#: lmms-eval's ``dataset_kwargs.cache_dir`` for the task, under ``$HF_HOME``.
CACHE_DIR = "vinoground"
#: Metric -> which of a group's four items (pos text, neg text, pos video, neg video) it needs.
METRICS: dict[str, tuple[int, ...]] = {
    "vinoground_text_score": (0, 1),
    "vinoground_video_score": (2, 3),
    "vinoground_group_score": (0, 1, 2, 3),
}
#: Where lmms-eval's task reads each question type's ground truth, inside the cache folder.
_SCORE_FILES = {
    "text": "vinoground_videos/vinoground_textscore.json",
    "video": "vinoground_videos_concated/vinoground_videoscore.json",
}


def _ground_truth() -> dict[str, dict[str, str]]:
    """Question type -> item (``"0_pos"``) -> ``GT``, read as lmms-eval's ``prep_data``
    reads it, from the ``$HF_HOME`` of this run (not the one its module saw on import)."""
    cache = Path(os.path.expanduser(os.environ.get("HF_HOME", "~/.cache/huggingface/"))) / CACHE_DIR
    return {
        kind: {item["idx"]: item["GT"] for item in json.loads((cache / name).read_text())}
        for kind, name in _SCORE_FILES.items()
    }


def process_results(doc: dict, results: list[str]) -> dict[str, Any]:
    """lmms-eval's per-item record, under each of :data:`METRICS`."""
    from lmms_eval.tasks.vinoground.utils import vinoground_process_results

    record = vinoground_process_results(doc, results)["vinoground_score"]
    return {metric: record for metric in METRICS}


def _group_table(records: list[dict[str, Any]]) -> dict[int, list[bool]]:
    truth = _ground_truth()
    groups: dict[int, list[bool]] = {}
    for record in records:
        index, kind, pred = record["index"], record["question_type"], record["pred"]
        column = (0 if "pos" in index else 1) + (2 if kind == "video" else 0)
        row = groups.setdefault(int(index.split("_")[0]), [False] * 4)
        row[column] = bool(pred) and pred[0].lower() == truth[kind][index].lower()
    return groups


def _aggregator(columns: tuple[int, ...]):
    def aggregate(records: list[dict[str, Any]]) -> float:
        groups = _group_table(records)
        right = sum(all(row[column] for column in columns) for row in groups.values())
        return 100.0 * right / len(groups)

    return aggregate


def task_override() -> dict[str, Any]:
    """The task-config entries that replace lmms-eval's aggregation (module docstring)."""
    return {
        "process_results": process_results,
        "metric_list": [
            {"metric": metric, "aggregation": _aggregator(columns), "higher_is_better": True}
            for metric, columns in METRICS.items()
        ],
    }

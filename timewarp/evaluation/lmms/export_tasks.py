"""Our own benchmarks as lmms-eval tasks (``timewarp_normal``, ``timewarp_shuffled``, defined
in :mod:`~timewarp.evaluation.lmms.task_configs`), read from a data-stage export folder:
``timewarp_<variant>_benchmark.json`` and ``<variant>_videos/<video>.mp4``.

This module must not import zenml.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from timewarp.evaluation.lmms.names import EXPORT_FAMILY
from timewarp.evaluation.lmms.names import EXPORT_VARIANTS as VARIANTS
from timewarp.evaluation.lmms.task_configs import TASKS_DIR
from timewarp.evaluation.lmms.task_configs.utils import (
    export_task_override,
    rows_file,
    video_file,
)

__all__ = ["EXPORT_FAMILY", "TASKS_DIR", "export_overrides"]


def _check_export(task: str, root: Path) -> None:
    """Every row of ``task`` in ``root`` has its video, or an error naming what is missing."""
    rows = rows_file(root, task)
    if not rows.is_file():
        raise FileNotFoundError(
            f"{task}: {rows} does not exist; give the export_dir a data pipeline wrote (export_dir: ...), "
            "which holds timewarp_normal_benchmark.json and timewarp_shuffled_benchmark.json"
        )
    items = json.loads(rows.read_text())
    missing = [item["video"] for item in items if not video_file(root, task, item["video"]).is_file()]
    if missing:
        hint = (" Shuffled videos are exported only when the data stage renders them (render_shuffled_videos: true)."
                if VARIANTS[task] == "shuffled" else "")
        raise FileNotFoundError(
            f"{task}: {len(missing)} of {len(items)} items have no video in {video_file(root, task, '').parent} "
            f"(first: {sorted(set(missing))[:3]}).{hint}"
        )


def export_overrides(benchmarks: list[str], benchmark_roots: Mapping[str, str | Path]) -> dict[str, dict[str, Any]]:
    """Our tasks among ``benchmarks`` -> the task-config entries reading their export folder
    (checked: rows file and every video present)."""
    overrides = {}
    for task in benchmarks:
        if task not in VARIANTS:
            continue
        root = benchmark_roots.get(task) or benchmark_roots.get(EXPORT_FAMILY)
        if root is None:
            raise ValueError(
                f"{task} is read from an export folder a data pipeline wrote: give benchmark_roots "
                f"{{'{EXPORT_FAMILY}': <export_dir>}}"
            )
        _check_export(task, Path(root).resolve())
        overrides[task] = export_task_override(Path(root).resolve(), task)
    return overrides

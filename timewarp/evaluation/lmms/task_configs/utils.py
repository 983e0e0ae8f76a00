"""Prompt, scoring and video lookup of the ``timewarp_normal`` / ``timewarp_shuffled``
lmms-eval tasks, as our own scorer does it (:mod:`timewarp.evaluation.scoring`): the
exported question with its lettered options and the instruction, the reply read by
:func:`~timewarp.evaluation.extract.extract_option` (no option found counts as wrong).

This module must not import zenml.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from timewarp.evaluation.extract import extract_option
from timewarp.evaluation.lmms.names import EXPORT_VARIANTS as VARIANTS
from timewarp.evaluation.scoring import INSTRUCTION


def rows_file(root: Path, task: str) -> Path:
    return root / f"timewarp_{VARIANTS[task]}_benchmark.json"


def video_file(root: Path, task: str, video_id: str) -> Path:
    return root / f"{VARIANTS[task]}_videos" / f"{video_id}.mp4"


def timewarp_doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    return f"{doc['question']}\n{INSTRUCTION}"


def timewarp_process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return {"accuracy": float(extract_option(results[0], doc["options"]) == doc["answer_index"])}


def _doc_to_visual(doc: dict, root: Path, task: str) -> list[str]:
    return [str(video_file(root, task, doc["video"]))]


def export_task_override(root: Path, task: str) -> dict[str, Any]:
    """Task-config entries that read ``task``'s rows and videos from the export ``root``."""
    return {
        "dataset_kwargs": {"data_files": {"test": str(rows_file(root, task))}},
        "doc_to_visual": partial(_doc_to_visual, root=root, task=task),
    }

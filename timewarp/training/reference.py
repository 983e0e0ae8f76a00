"""Reference log-probabilities for DPO, computed once before training.

DPO compares the policy's log-probability of each completion with the reference model's.
The reference is fixed, so its values are computed in one pass over the pairs and stored
with them (``ref_chosen_logps`` / ``ref_rejected_logps``): training then never runs the
reference model, and it need not stay in memory. TRL can do this itself only for text
data (it refuses ``precompute_ref_log_probs`` for vision datasets), hence this module; the
trainer in :mod:`timewarp.training.dpo` reads the stored values from each batch.

The reference is the base model: a separate model, or the policy with its LoRA adapters
disabled (:func:`reference_context`). Values are the summed log-probabilities of the
completion tokens (:func:`~timewarp.models.logprobs.completion_logps`), exactly what TRL's
DPOTrainer computes for its live reference.

Under a multi-process launch :func:`gather_reference_logps` splits the pass: each process
computes a contiguous share of the rows and all of them gather the values, so every process
trains with the same reference columns.

This module must not import zenml.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from timewarp.models.logprobs import completion_logps

__all__ = [
    "REF_CHOSEN",
    "REF_REJECTED",
    "compute_reference_logps",
    "gather_reference_logps",
    "has_reference_logps",
    "load_reference_logps",
    "reference_context",
    "save_reference_logps",
    "shard_bounds",
    "with_reference_logps",
]

logger = logging.getLogger(__name__)

REF_CHOSEN = "ref_chosen_logps"
REF_REJECTED = "ref_rejected_logps"


@contextlib.contextmanager
def reference_context(model: Any) -> Iterator[None]:
    """Run ``model`` as its reference: LoRA adapters disabled for a PEFT model."""
    if hasattr(model, "peft_config") and hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            yield
    else:
        yield


def _to_device(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    return {key: value.to(device) if hasattr(value, "to") else value for key, value in batch.items()}


def compute_reference_logps(
    model: Any,
    collator: Callable[[list[dict[str, Any]]], dict[str, Any]],
    rows: list[dict[str, Any]],
    *,
    batch_size: int = 4,
    device: Any = None,
) -> list[tuple[float, float]]:
    """(chosen, rejected) reference log-probs for each row, in row order. ``collator`` is the
    training collator (so the sequences are exactly those trained on); ``model`` is run as
    its reference (:func:`reference_context`), in eval mode, without gradients."""
    import torch

    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    values: list[tuple[float, float]] = []
    try:
        with torch.no_grad(), reference_context(model):
            for start in range(0, len(rows), batch_size):
                chunk = [
                    {k: v for k, v in row.items() if k not in (REF_CHOSEN, REF_REJECTED)}
                    for row in rows[start : start + batch_size]
                ]
                logps = completion_logps(model, _to_device(collator(chunk), device)).cpu()
                chosen, rejected = logps.chunk(2)  # the batch is [chosen..., rejected...]
                values.extend(zip(chosen.tolist(), rejected.tolist(), strict=True))
    finally:
        model.train(was_training)
    return values


def shard_bounds(count: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of process ``rank`` when ``count`` rows are split into
    ``world_size`` contiguous shares, the first ``count % world_size`` one row longer."""
    share, longer = divmod(count, world_size)
    start = rank * share + min(rank, longer)
    return start, start + share + (rank < longer)


def gather_reference_logps(
    model: Any,
    collator: Callable[[list[dict[str, Any]]], dict[str, Any]],
    rows: list[dict[str, Any]],
    *,
    batch_size: int = 4,
    device: Any = None,
) -> list[tuple[float, float]]:
    """:func:`compute_reference_logps` of all ``rows`` in every process of the
    ``torch.distributed`` group, each process computing only its share
    (:func:`shard_bounds`); in one process, all rows. Every process calls it."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise RuntimeError(
                f"WORLD_SIZE={os.environ['WORLD_SIZE']} but torch.distributed is not initialised: build the "
                "training arguments (recipe.to_trl) first, which set up the process group"
            )
        return compute_reference_logps(model, collator, rows, batch_size=batch_size, device=device)
    rank, world_size = dist.get_rank(), dist.get_world_size()
    start, stop = shard_bounds(len(rows), rank, world_size)
    # A ZeRO-3 model's forward pass gathers weights from every process, so all must run as
    # many batches as the longest share (rank 0's). Shares differ by at most one row, so a
    # shorter share has at most one batch less; then its last batch is full and one more
    # row (a repeat, its values dropped) makes the missing batch.
    batches = -(-(stop - start) // batch_size)
    most = -(-shard_bounds(len(rows), 0, world_size)[1] // batch_size)
    padding = rows[:1] * (most - batches)
    values = compute_reference_logps(model, collator, rows[start:stop] + padding, batch_size=batch_size, device=device)
    logger.info(
        "reference log-probs: process %d of %d computed pairs %d-%d of %d (%d padding rows)",
        rank, world_size, start, stop - 1, len(rows), len(padding),
    )
    shares: list[Any] = [None] * world_size
    dist.all_gather_object(shares, values[: stop - start])
    return [pair for share in shares for pair in share]


def with_reference_logps(rows: list[dict[str, Any]], values: list[tuple[float, float]]) -> list[dict[str, Any]]:
    """Copies of ``rows`` with the ``ref_chosen_logps`` / ``ref_rejected_logps`` columns."""
    if len(rows) != len(values):
        raise ValueError(f"{len(values)} reference values for {len(rows)} rows")
    return [{**row, REF_CHOSEN: chosen, REF_REJECTED: rejected} for row, (chosen, rejected) in zip(rows, values)]


def has_reference_logps(rows: Any) -> bool:
    """Whether rows (a list of dicts or a ``datasets.Dataset``) carry both columns."""
    columns = getattr(rows, "column_names", None)
    if columns is None:
        columns = list(rows[0]) if len(rows) else []
    return REF_CHOSEN in columns and REF_REJECTED in columns


def _row_key(row: dict[str, Any]) -> str:
    """Identifies a pair by its content, so edited texts under an old id are recomputed."""
    fields = [str(row.get(name, "")) for name in ("id", "video_id", "prompt", "chosen", "rejected")]
    return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


def save_reference_logps(path: str | Path, rows: list[dict[str, Any]], *, key: dict[str, Any]) -> Path:
    """Store the values by pair (id and texts) with ``key`` (what they depend on: reference model,
    frames per video...), so a resumed run reuses them only when nothing changed."""
    path = Path(path)
    payload = {"key": key, "values": {_row_key(row): [row[REF_CHOSEN], row[REF_REJECTED]] for row in rows}}
    # Written aside then renamed: another process may be reading the file.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload))
    os.replace(partial, path)
    return path


def load_reference_logps(
    path: str | Path, rows: list[dict[str, Any]], *, key: dict[str, Any]
) -> list[dict[str, Any]] | None:
    """``rows`` with stored values, or None when the file is missing, was made under another
    ``key`` or lacks a pair."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    stored = payload.get("values", {})
    keys = [_row_key(row) for row in rows]
    if payload.get("key") != key or any(k not in stored for k in keys):
        return None
    return with_reference_logps(rows, [tuple(stored[k]) for k in keys])

"""Operations on the padded batches a family's ``encode`` returns.

This module must not import zenml.
"""

from __future__ import annotations

from typing import Any

__all__ = ["truncate_batch"]

#: Batch keys that are per-token (batch, length) tensors, cut together by truncation.
_TOKEN_KEYS = ("input_ids", "attention_mask", "completion_mask", "mm_token_type_ids", "token_type_ids", "labels")


def truncate_batch(batch: dict[str, Any], max_length: int | None) -> dict[str, Any]:
    """Cut the per-token tensors to ``max_length`` (keeping the start). Refuses to cut video
    tokens: the vision tensors would no longer match the placeholders."""
    if max_length is None or batch["input_ids"].shape[1] <= max_length:
        return batch
    mm = batch.get("mm_token_type_ids")
    if mm is not None and bool((mm[:, max_length:] != 0).any()):
        raise ValueError(f"max_length={max_length} would cut video tokens; raise it or set it to None")
    return {key: (value[:, :max_length] if key in _TOKEN_KEYS else value) for key, value in batch.items()}

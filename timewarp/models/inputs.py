"""Encoded batches as generation and the scorers feed them to a model: chunks of items,
left re-padding, tensors moved to the model's device and precision.

This module must not import zenml; torch is imported lazily.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final, TypeVar

__all__ = ["chunks", "left_padded", "model_device", "model_inputs", "pad_token_id"]

T = TypeVar("T")

#: Per-token (batch, length) tensors an encoded batch may hold; re-padding moves them together.
_TOKEN_KEYS: Final = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last one shorter), read lazily."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def model_device(model: Any) -> Any:
    device = getattr(model, "device", None)
    return device if device is not None else next(model.parameters()).device


def model_inputs(batch: dict[str, Any], model: Any) -> dict[str, Any]:
    """``batch`` without ``completion_mask``, on the model's device; pixels in its dtype
    (processors return float32, a bf16 vision tower would reject them)."""
    import torch

    device, dtype = model_device(model), getattr(model, "dtype", None)
    inputs: dict[str, Any] = {}
    for key, value in batch.items():
        if key == "completion_mask":
            continue
        if isinstance(value, torch.Tensor):
            if key.startswith("pixel_values") and value.is_floating_point() and dtype is not None:
                value = value.to(device=device, dtype=dtype)
            else:
                value = value.to(device)
        inputs[key] = value
    return inputs


def pad_token_id(processor: Any) -> int:
    tokenizer = processor.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad nor an eos token")
    return int(pad)


def left_padded(batch: dict[str, Any]) -> dict[str, Any]:
    """``batch`` with every row's tokens moved to the right end (left padding). Vision
    tensors stay: videos are matched to placeholders in row order, which is unchanged."""
    import torch

    mask = batch["attention_mask"]
    lengths = mask.sum(dim=1)
    width = mask.shape[1]
    positions = torch.arange(width, device=mask.device).expand_as(mask)
    if bool((mask == (positions >= width - lengths[:, None]).to(mask.dtype)).all()):
        return dict(batch)  # already left-padded (or unpadded)
    if not bool((mask == (positions < lengths[:, None]).to(mask.dtype)).all()):
        raise ValueError("encoded rows are neither left- nor right-padded")
    out = dict(batch)
    for key in _TOKEN_KEYS:
        if key in batch:
            out[key] = torch.stack(
                [torch.roll(row, shifts=int(width - n)) for row, n in zip(batch[key], lengths.tolist())]
            )
    return out

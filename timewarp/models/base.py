"""The interface every video-LLM family adapter implements.

A family adapter knows what differs between model families: how frames enter the chat
template and the processor, which tensors the forward pass needs, and how to build a
tiny random-weight checkpoint of the family offline. Training and evaluation code only
talks to this interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class VideoSample:
    """One example: the frames shown, the user's question and (for training or scoring)
    the assistant's answer."""

    frames: np.ndarray  # (T, H, W, 3) uint8, in the order the model is shown them
    prompt: str
    completion: str | None = None


class VideoLLMFamily(Protocol):
    name: str  # e.g. "qwen2_vl"
    model_types: tuple[str, ...]  # transformers `config.model_type` values it serves
    vision_keys: tuple[str, ...]  # processor outputs the forward pass needs besides text

    def load(
        self,
        path: str,
        *,
        dtype: Any = "auto",
        device_map: Any = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
    ) -> tuple[Any, Any]:
        """(model, processor) from a hub id or a local folder via transformers' Auto classes."""
        ...

    def encode(self, processor: Any, samples: list[VideoSample]) -> dict[str, Any]:
        """A padded batch: ``input_ids``, ``attention_mask``, ``completion_mask`` (1 on the
        answer's tokens, 0 elsewhere; all 0 when ``completion`` is None) and the family's
        vision tensors, rows in the order of ``samples``."""
        ...

    def make_tiny(self, out_dir: str | Path, *, seed: int = 0) -> Path:
        """Write a tiny random-weight checkpoint (model, tokenizer with the family's special
        tokens and chat template, the family's real processor) that ``load`` reads exactly
        like a hub checkpoint. Offline, deterministic for a seed."""
        ...

"""Which of a video's frames a model is shown: the one rule training, evaluation and
benchmarks share, so a model is scored on frames picked as it was trained on them.

This module must not import zenml.
"""

from __future__ import annotations

import numpy as np

__all__ = ["select_frames"]


def select_frames(frames: np.ndarray, count: int | None) -> np.ndarray:
    """``count`` frames spread evenly over ``frames`` (first and last kept), in order; all of
    them when ``count`` is None or not smaller than what there is."""
    if count is None or count >= len(frames):
        return frames
    if count < 1:
        raise ValueError(f"frame count must be at least 1, got {count}")
    indices = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return frames[indices]

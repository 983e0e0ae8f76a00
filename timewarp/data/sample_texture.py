"""Camera-like pixels for the generated sample videos: drifting gradients, film grain and
moving distractor shapes, so decoding and encoding them cost what real footage costs."""

from __future__ import annotations

import numpy as np


class Texture:
    """Per-video texture pieces, made once: a gradient wider than the frame (it drifts) and
    a bank of grain frames (drawn per frame in a seeded order)."""

    GRAIN_FRAMES = 16
    GRAIN_SIGMA = 4.0

    def __init__(self, rng: np.random.Generator, width: int, height: int):
        self.width = width
        xs = np.linspace(0.0, 2.0 * np.pi, 2 * width, dtype=np.float32)
        ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
        # Brightness about 0.8-1.1 times the scene colour: its hue stays unambiguous.
        self.gradient = (0.95 + 0.12 * np.sin(xs)[None, :] + 0.08 * (ys - 0.5))[..., None]
        self.grain = rng.normal(0.0, self.GRAIN_SIGMA, (self.GRAIN_FRAMES, height, width, 1)).astype(np.float32)
        self.order = rng.integers(0, self.GRAIN_FRAMES, 1 << 16)

    def background(self, colour: tuple[int, int, int], t: float, index: int) -> np.ndarray:
        shift = int(t * 40) % self.width  # pans 40 px/s
        base = self.gradient[:, shift : shift + self.width] * np.asarray(colour, np.float32)
        return np.clip(base + self.grain[self.order[index % len(self.order)]], 0, 255).astype(np.uint8)


def draw_distractors(frame: np.ndarray, t: float) -> None:
    """Two small grey squares on circular paths: motion in every frame, off the scene's
    shape and too small to change the frame's colour."""
    height, width = frame.shape[:2]
    size = max(2, height // 24)
    for k, (speed, radius) in enumerate(((0.9, 0.30), (-1.3, 0.38))):
        angle = speed * t + k * np.pi
        cx = int((0.5 + radius * np.cos(angle)) * width)
        cy = int((0.5 + radius * np.sin(angle)) * height)
        frame[max(0, cy - size) : cy + size, max(0, cx - size) : cx + size] = 96 + 64 * k

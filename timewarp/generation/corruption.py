"""Frame corruptions for TimeWarp-Implicit's rejected answers: the model describes frames
it can barely see, and that description is the answer DPO teaches it to prefer less.

Each video draws, from a stream seeded by (seed, video id), a downscale and a colour
jitter, each with probability 0.5; drawing neither means the rejected answer comes from the
clean frames with the imagined-events prompt instead (``none``). Corrupting returns new
arrays: the frames a corpus stores are never written (the released script corrupted its
frame files in place, so a second run saw already-corrupted "clean" frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image, ImageEnhance

from timewarp.seeding import stable_rng

__all__ = ["CORRUPTION_NAMES", "ColourJitter", "Corruption", "apply_corruption", "draw_corruption"]

#: Longer side, in pixels, of a downscaled frame (before it is scaled back up).
DOWNSCALE_SIDE: Final = 20
#: Every name a corruption can have.
CORRUPTION_NAMES: Final = ("none", "downscale_20px", "colour_jitter", "downscale_20px+colour_jitter")

# A jitter factor is 1 +- U(0.2, 0.5) (never near 1, so a jitter always shows); a hue shift
# is +- U(0.05, 0.15) of the hue circle.
_FACTOR_CHANGE: Final = (0.2, 0.5)
_HUE_SHIFT: Final = (0.05, 0.15)


@dataclass(frozen=True)
class ColourJitter:
    """Enhancement factors (1: unchanged) and a hue shift (a fraction of the hue circle)."""

    brightness: float
    contrast: float
    saturation: float
    hue: float


@dataclass(frozen=True)
class Corruption:
    """What is done to a video's frames for its rejected answer."""

    downscale: bool
    jitter: ColourJitter | None

    @property
    def name(self) -> str:
        parts = ([f"downscale_{DOWNSCALE_SIDE}px"] if self.downscale else []) + (
            ["colour_jitter"] if self.jitter else []
        )
        return "+".join(parts) or "none"


def draw_corruption(seed: int, video_id: str) -> Corruption:
    """The corruption of ``video_id`` for ``seed``: the same on every run and machine. The
    jitter factors are drawn whether or not a jitter is, so each video's stream is fixed."""
    rng = stable_rng("implicit-corruption", seed, video_id)
    downscale, jitter = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
    signs = rng.choice((-1.0, 1.0), size=4)
    factors = 1.0 + signs[:3] * rng.uniform(*_FACTOR_CHANGE, size=3)
    hue = float(signs[3] * rng.uniform(*_HUE_SHIFT))
    colour = ColourJitter(*(round(float(f), 6) for f in factors), hue=round(hue, 6))
    return Corruption(downscale=downscale, jitter=colour if jitter else None)


def apply_corruption(frames: np.ndarray, corruption: Corruption) -> np.ndarray:
    """New (T, H, W, 3) uint8 frames with ``corruption`` applied, each the size of its input
    (the model is shown the same shape); ``frames`` is left as it is."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (T, H, W, 3), got {frames.shape}")
    return np.stack([_corrupt_frame(frame, corruption) for frame in frames])


def _corrupt_frame(frame: np.ndarray, corruption: Corruption) -> np.ndarray:
    # Every PIL operation below returns a new image; none writes into ``frame``.
    image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8))
    if corruption.downscale:
        image = _downscaled(image)
    if corruption.jitter is not None:
        image = _jittered(image, corruption.jitter)
    return np.array(image, dtype=np.uint8)


def _downscaled(image: Image.Image) -> Image.Image:
    """Shrunk so its longer side is :data:`DOWNSCALE_SIDE` pixels, then scaled back."""
    width, height = image.size
    scale = DOWNSCALE_SIDE / max(width, height)
    small = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(small, Image.Resampling.BOX).resize((width, height), Image.Resampling.BILINEAR)


def _jittered(image: Image.Image, jitter: ColourJitter) -> Image.Image:
    image = ImageEnhance.Brightness(image).enhance(jitter.brightness)
    image = ImageEnhance.Contrast(image).enhance(jitter.contrast)
    image = ImageEnhance.Color(image).enhance(jitter.saturation)
    hue, saturation, value = image.convert("HSV").split()
    shift = round(jitter.hue * 256) % 256
    hue = hue.point(lambda h: (h + shift) % 256)
    return Image.merge("HSV", (hue, saturation, value)).convert("RGB")

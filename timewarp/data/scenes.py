"""Stage 1 of TimeWarp: the scenes of a video that carry activities, as timed captions."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from timewarp.data.finevideo import FineVideoAnnotation, parse_timestamp


@dataclass(frozen=True)
class SceneSpan:
    """One kept scene: the span covered by its activities and their joined caption."""

    scene_id: int
    start: float
    end: float
    caption: str

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class SceneRules:
    """The paper's scene rules, with its 105 s cap as a parameter."""

    max_seconds: float = 105.0
    min_scenes: int = 2
    # The released scripts cast times to int; floats are kept unless asked otherwise.
    integer_timestamps: bool = False


@dataclass(frozen=True)
class SceneSelection:
    """Kept scenes in true order plus why each other scene was not kept."""

    scenes: list[SceneSpan]
    skipped: list[str] = field(default_factory=list)


class SceneRuleError(ValueError):
    """The annotation yields no usable scene sequence; the message says why."""


def select_scenes(annotation: FineVideoAnnotation, rules: SceneRules) -> SceneSelection:
    """Apply the paper's rules to the scenes of one video.

    A scene with activities spans [start of its first activity, end of its last] and is
    captioned by its activity descriptions joined with spaces. Scenes are walked in
    order; one is kept when start < end <= ``max_seconds``; the walk stops at the first
    scene that ends after the cap. Any unparseable timestamp rejects the whole video.
    """
    kept: list[SceneSpan] = []
    skipped: list[str] = []
    for scene in annotation.content_metadata.scenes:
        if not scene.activities:
            skipped.append(f"scene {scene.sceneId}: no activities")
            continue
        try:
            start = parse_timestamp(scene.activities[0].timestamp.start_timestamp)
            end = parse_timestamp(scene.activities[-1].timestamp.end_timestamp)
        except ValueError as error:
            raise SceneRuleError(f"scene {scene.sceneId}: {error}") from None
        if rules.integer_timestamps:
            start, end = float(int(start)), float(int(end))
        if end > rules.max_seconds:
            skipped.append(
                f"scene {scene.sceneId} and later: end {end:.3f}s past the {rules.max_seconds:g}s cap"
            )
            break
        if not start < end:
            skipped.append(f"scene {scene.sceneId}: reversed or empty span {start:.3f}s..{end:.3f}s")
            continue
        if kept and start < kept[-1].end:
            skipped.append(
                f"scene {scene.sceneId}: starts at {start:.3f}s before the previous kept scene ends "
                f"({kept[-1].end:.3f}s)"
            )
            continue
        caption = " ".join(a.description.strip() for a in scene.activities if a.description.strip())
        kept.append(SceneSpan(scene_id=scene.sceneId, start=start, end=end, caption=caption))
    if len(kept) < rules.min_scenes:
        detail = "; ".join(skipped) if skipped else "no further scenes"
        raise SceneRuleError(
            f"{len(kept)} usable scene(s), fewer than min_scenes={rules.min_scenes} ({detail})"
        )
    return SceneSelection(scenes=kept, skipped=skipped)


def allocate_frames(scenes: list[SceneSpan], frames_per_video: int) -> list[int]:
    """How many sampled frames each scene gets: at least one each when there are enough
    frames (so every scene is seen in both orders), the rest by duration (largest
    remainder, ties to the earlier scene)."""
    count = len(scenes)
    if frames_per_video < 1:
        raise ValueError("frames_per_video must be at least 1")
    base = [1] * count if frames_per_video >= count else [0] * count
    spare = frames_per_video - sum(base)
    total = sum(s.duration for s in scenes)
    shares = [spare * s.duration / total for s in scenes]
    extra = [math.floor(x) for x in shares]
    order = sorted(range(count), key=lambda i: (-(shares[i] - extra[i]), i))
    for i in order[: spare - sum(extra)]:
        extra[i] += 1
    return [b + e for b, e in zip(base, extra)]


def frame_times(scenes: list[SceneSpan], frames_per_video: int) -> list[tuple[int, float]]:
    """(scene index, time) of each sampled frame in true order: each scene's frames at
    the centres of equal slices of its span."""
    times: list[tuple[int, float]] = []
    for index, (scene, n) in enumerate(zip(scenes, allocate_frames(scenes, frames_per_video))):
        step = scene.duration / n if n else 0.0
        times.extend((index, scene.start + (k + 0.5) * step) for k in range(n))
    return times

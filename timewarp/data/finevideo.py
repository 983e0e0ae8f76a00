"""Typed schema of a FineVideo row's ``json`` column and its timestamp format.

FineVideo annotations are machine-made, so validation is strict about structure (a
missing field is an error with its path) and lenient about content (empty lists, odd
text); the scene rules in :mod:`timewarp.data.scenes` decide what content is usable.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

_TIMESTAMP = re.compile(r"^(\d{1,2}):([0-5]\d):([0-5]\d)(?:\.(\d{1,6}))?$")


class TimestampError(ValueError):
    """A timestamp string that is not ``HH:MM:SS[.mmm]``."""


def parse_timestamp(text: str) -> float:
    """Seconds of a FineVideo ``"HH:MM:SS.mmm"`` timecode, as a float."""
    match = _TIMESTAMP.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise TimestampError(f"unparseable timestamp {text!r} (expected HH:MM:SS.mmm)")
    hours, minutes, seconds, fraction = match.groups()
    value = int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    if fraction:
        value += int(fraction) / 10 ** len(fraction)
    return round(float(value), 6)


def format_timestamp(seconds: float) -> str:
    """Inverse of :func:`parse_timestamp` at millisecond precision."""
    millis = int(round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


class _Record(BaseModel):
    # Extra keys are tolerated: the dataset has grown fields over time.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Timestamps(_Record):
    start_timestamp: str
    end_timestamp: str


class Activity(_Record):
    description: str
    timestamp: Timestamps


class Prop(_Record):
    name: str
    timestamp: Timestamps


class EditingDetail(_Record):
    description: str
    timestamps: Timestamps


class KeyMoment(_Record):
    timestamp: str
    changeDescription: str


class Mood(_Record):
    description: str
    keyMoments: list[KeyMoment] = Field(default_factory=list)


class NarrativeStep(_Record):
    description: str
    timestamp: str


class CharacterInteraction(_Record):
    characters: list[str] = Field(default_factory=list)
    description: str


class Scene(_Record):
    sceneId: int
    title: str
    timestamps: Timestamps
    cast: list[str] = Field(default_factory=list)
    activities: list[Activity]
    props: list[Prop] = Field(default_factory=list)
    videoEditingDetails: list[EditingDetail] = Field(default_factory=list)
    mood: Mood | None = None
    narrativeProgression: list[NarrativeStep] = Field(default_factory=list)
    characterInteraction: list[CharacterInteraction] = Field(default_factory=list)
    thematicElements: str = ""
    contextualRelevance: str = ""
    dynamismScore: float | None = None
    audioVisualCorrelation: float | None = None


class Character(_Record):
    characterId: str
    name: str
    description: str


class QAndA(_Record):
    question: str
    answer: str


class Climax(_Record):
    description: str
    timestamp: str


class Storylines(_Record):
    description: str
    scenes: list[int] = Field(default_factory=list)
    climax: Climax | None = None


class TrimmingSuggestion(_Record):
    description: str
    timestamps: Timestamps


class ContentMetadata(_Record):
    title: str
    description: str
    fps: float | None = None
    characterList: list[Character] = Field(default_factory=list)
    qAndA: list[QAndA] = Field(default_factory=list)
    storylines: Storylines | None = None
    trimmingSuggestions: list[TrimmingSuggestion] = Field(default_factory=list)
    scenes: list[Scene]


class FineVideoAnnotation(_Record):
    """The ``json`` column of one FineVideo row."""

    content_fine_category: str
    content_parent_category: str
    duration_seconds: int
    original_json_filename: str
    original_video_filename: str
    resolution: str
    text_to_speech: str = ""
    content_metadata: ContentMetadata


def validate_annotation(raw: Any) -> FineVideoAnnotation:
    """Validate a decoded ``json`` value; raise ``ValueError`` naming every bad field."""
    if raw is None:
        raise ValueError("json column is empty")
    try:
        return FineVideoAnnotation.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or '<root>'}: {item['msg']}"
            for item in error.errors()[:5]
        )
        raise ValueError(f"json does not match the FineVideo schema: {problems}") from None

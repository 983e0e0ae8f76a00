"""Typed schema of a FineVideo row's ``json`` column and its timestamp format.

FineVideo annotations are machine-made, so validation is strict about the structure of
the fields the method reads (a missing or mistyped one rejects the row, named by its path),
only warns about the rest of the documented schema (a float ``duration_seconds`` costs no
video), and is lenient about content (empty lists, odd text): the scene rules in
:mod:`timewarp.data.scenes` decide what content is usable.
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


# ---- the fields the method reads: a mismatch here rejects the row ------------------------


class Activity(_Record):
    description: str
    timestamp: Timestamps


class Scene(_Record):
    sceneId: int
    activities: list[Activity]


class ContentMetadata(_Record):
    scenes: list[Scene]


class FineVideoAnnotation(_Record):
    """What the method reads of one FineVideo row's ``json`` column: the video and
    annotation file names, and each scene's id and timed activities (captions and spans)."""

    original_json_filename: str
    original_video_filename: str
    content_metadata: ContentMetadata


# ---- the rest of the documented schema: a mismatch here is a warning ----------------------


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


class DocumentedScene(Scene):
    title: str
    timestamps: Timestamps
    cast: list[str] = Field(default_factory=list)
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


class DocumentedContentMetadata(ContentMetadata):
    title: str
    description: str
    fps: float | None = None
    characterList: list[Character] = Field(default_factory=list)
    qAndA: list[QAndA] = Field(default_factory=list)
    storylines: Storylines | None = None
    trimmingSuggestions: list[TrimmingSuggestion] = Field(default_factory=list)
    scenes: list[DocumentedScene]


class DocumentedAnnotation(FineVideoAnnotation):
    """The whole ``json`` column as FineVideo documents it."""

    content_fine_category: str
    content_parent_category: str
    duration_seconds: int
    resolution: str
    text_to_speech: str = ""
    content_metadata: DocumentedContentMetadata


def _problems(error: ValidationError, positions: bool = True) -> list[tuple[str, str]]:
    """(field path, message) of each error; list positions as ``*`` without ``positions``."""
    return [
        (".".join(str(part) if positions or not isinstance(part, int) else "*" for part in item["loc"]) or "<root>",
         item["msg"])
        for item in error.errors()
    ]


def validate_annotation(raw: Any) -> FineVideoAnnotation:
    """Validate the fields the method reads of a decoded ``json`` value; raise
    ``ValueError`` naming every bad one."""
    if raw is None:
        raise ValueError("json column is empty")
    try:
        return FineVideoAnnotation.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(f"{where}: {message}" for where, message in _problems(error)[:5])
        raise ValueError(f"json does not match the FineVideo schema: {problems}") from None


def schema_warnings(raw: Any) -> list[str]:
    """Where a ``json`` value that passed :func:`validate_annotation` departs from the rest
    of FineVideo's documented schema, in fields the method never reads: ``"<field>: <why>"``
    once per field and reason, list positions as ``*`` so that warnings count across
    videos (``content_metadata.scenes.*.mood.description: Field required``)."""
    try:
        DocumentedAnnotation.model_validate(raw)
    except ValidationError as error:
        return sorted({f"{where}: {message}" for where, message in _problems(error, positions=False)})
    return []

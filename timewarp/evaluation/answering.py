"""Answering questions about mp4 videos the way evaluation scores a model: what a served
model (:mod:`timewarp.tracking.servable`) replies.

- With options, the answer is one of them, picked by one of the scorers of
  :mod:`timewarp.evaluation.scoring` exactly as evaluation picks: ``text_loglik`` ranks the
  option texts after the question alone, ``loglik`` ranks the letters after the lettered
  prompt (:func:`~timewarp.evaluation.scoring.lettered_prompt`), ``generation`` reads the
  option out of the greedy reply to that prompt (the reply itself when it names none).
- Without options, the answer is the greedy reply to the question.

A video is a local path, a ``file://`` URI or any other fsspec URI (``s3://``, ``hf://``,
``https://``, ``data:``; remote files are copied to a temporary file first).
``frames_per_video`` frames are read at the centres of equal slices of the whole video, as
preparation samples a scene (:func:`~timewarp.data.scenes.frame_times`), so a long video is
never decoded whole; a video with fewer frames gives all of them, as
:func:`~timewarp.models.frames.select_frames` does. Frames are read a batch at a time.

This module must not import zenml.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem

from timewarp.evaluation.extract import extract_option
from timewarp.evaluation.loglik import most_likely_answers
from timewarp.evaluation.scoring import SCORERS, ScoringConfig, generate_replies, lettered_prompt
from timewarp.generation.records import OPTION_LETTERS
from timewarp.models.base import VideoLLMFamily, VideoSample
from timewarp.data.scenes import SceneSpan, frame_times
from timewarp.data.video import read_frames, video_info

__all__ = ["QuestionError", "VideoQuestion", "answer_questions", "video_frames"]

#: Scorers that show the options lettered, so they take at most one option per letter.
_LETTERED: frozenset[str] = frozenset({"loglik", "generation"})
_COPY_CHUNK = 1 << 20
#: The user's text for a question.
Prompt = Callable[["VideoQuestion"], str]


class QuestionError(ValueError):
    """A question cannot be answered as asked; the message names it and what to fix."""


@dataclass(frozen=True)
class VideoQuestion:
    """A question about the mp4 at ``video``; ``options`` empty for an open question.
    ``label`` names it in errors (e.g. "row 3")."""

    video: str
    question: str
    options: tuple[str, ...] = ()
    label: str = "question"


def _shown(location: str) -> str:
    """``location`` as messages show it: without credentials or signed query strings, and
    a ``data:`` URI by its media type only."""
    if location.startswith("data:"):
        return f"{location.split(',', 1)[0]},... ({len(location)} characters)"
    parts = urlsplit(location)
    if not parts.scheme or len(parts.scheme) == 1:  # a path (a Windows drive letter too)
        return location
    return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"


def _read_evenly(path: Path, count: int) -> np.ndarray:
    info = video_info(path)
    shown = max(1, min(count, int(info.duration * info.fps)))
    return read_frames(path, [time for _, time in frame_times([SceneSpan(0, 0.0, info.duration, "")], shown)])


def video_frames(location: str, count: int) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of the mp4 at ``location`` (see the module docstring)."""
    fs, path = fsspec.core.url_to_fs(location)
    if isinstance(fs, LocalFileSystem):
        if not Path(path).is_file():
            raise FileNotFoundError(path)
        return _read_evenly(Path(path), count)
    with tempfile.TemporaryDirectory(prefix="timewarp-video-") as folder:
        local = Path(folder) / "video.mp4"
        with fs.open(path, "rb") as source, local.open("wb") as target:
            shutil.copyfileobj(source, target, _COPY_CHUNK)
        return _read_evenly(local, count)


def _frames(question: VideoQuestion, count: int) -> np.ndarray:
    shown = _shown(question.video)
    try:
        return video_frames(question.video, count)
    except FileNotFoundError:
        raise QuestionError(
            f"{question.label}: no video at {shown}; give the path or URI of an mp4 this server can read"
        ) from None
    except (OSError, ValueError, ImportError) as error:  # fsspec, storage clients and the decoder
        raise QuestionError(
            f"{question.label}: cannot read an mp4 from {shown} ({type(error).__name__}: {error}); "
            "give an mp4 ffmpeg can decode (e.g. H.264); for a URI, its fsspec package (e.g. s3fs) must be installed"
        ) from None


def _check(question: VideoQuestion, scorer: str) -> None:
    if not question.video.strip():
        raise QuestionError(f"{question.label}: no video; give the path or URI of an mp4")
    if not question.question.strip():
        raise QuestionError(f"{question.label}: no question; give the text to ask about the video")
    if any(not option.strip() for option in question.options):
        raise QuestionError(f"{question.label}: an option is empty; give each option's text")
    if scorer in _LETTERED and len(question.options) > len(OPTION_LETTERS):
        raise QuestionError(
            f"{question.label}: {len(question.options)} options, but the {scorer} scorer letters them "
            f"{', '.join(OPTION_LETTERS)}; give at most {len(OPTION_LETTERS)}"
        )


def answer_questions(
    model: Any,
    processor: Any,
    family: VideoLLMFamily,
    questions: Sequence[VideoQuestion],
    *,
    scorer: str,
    config: ScoringConfig = ScoringConfig(),
) -> list[str]:
    """One answer per question, in order (see the module docstring). ``config`` gives the
    frames per video, the batch size and the reply length. Every question is checked before
    any video is read; a video that cannot be read raises :class:`QuestionError`."""
    if scorer not in SCORERS:
        raise ValueError(f"scorer must be one of {SCORERS}, got {scorer!r}")
    for question in questions:
        _check(question, scorer)
    answers: list[str] = [""] * len(questions)
    open_ones = [k for k, question in enumerate(questions) if not question.options]
    closed = [k for k, question in enumerate(questions) if question.options]

    def samples(indices: list[int], prompt: Prompt) -> Iterator[VideoSample]:
        for k in indices:
            yield VideoSample(_frames(questions[k], config.frames_per_video), prompt(questions[k]))

    def replies(indices: list[int], prompt: Prompt, desc: str) -> list[str]:
        return generate_replies(
            model, processor, family, samples(indices, prompt),
            batch_size=config.batch_size, max_new_tokens=config.max_new_tokens, total=len(indices), desc=desc,
        )

    def lettered(question: VideoQuestion) -> str:
        return lettered_prompt(question.question, question.options)

    if open_ones:
        for k, reply in zip(open_ones, replies(open_ones, lambda q: q.question, "open questions"), strict=True):
            answers[k] = reply
    if not closed:
        return answers
    if scorer == "generation":
        for k, reply in zip(closed, replies(closed, lettered, "generation scorer"), strict=True):
            pick = extract_option(reply, list(questions[k].options))
            answers[k] = reply if pick is None else questions[k].options[pick]
        return answers
    if scorer == "loglik":
        prompt, candidates = lettered, lambda q: list(OPTION_LETTERS[: len(q.options)])
    else:
        prompt, candidates = (lambda q: q.question), (lambda q: list(q.options))
    queries = ((sample, candidates(questions[k])) for k, sample in zip(closed, samples(closed, prompt)))
    picks = most_likely_answers(
        model, processor, family, queries, batch_size=config.batch_size, total=len(closed), desc=f"{scorer} scorer"
    )
    for k, pick in zip(closed, picks, strict=True):
        answers[k] = questions[k].options[pick]
    return answers

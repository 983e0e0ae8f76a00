"""Four-option questions from an LLM's reply: options written from the captions, checked
against the exact answers for both scene orders, and the correct option's position
balanced over A-D in code (models favour some letters)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from timewarp.data.corpus import PreparedVideo
from timewarp.generation.records import OPTION_LETTERS
from timewarp.generation.replies import (
    ItemError,
    answer_event,
    event_number,
    item_text,
    option_letter,
    tagged_question,
)
from timewarp.generation.temporal import TemporalQuestion, event_sentence
from timewarp.seeding import stable_int, stable_rng
from timewarp.text import normalise_text

__all__ = ["MCQ_TYPES", "NOTHING_OPTION", "ValidMCQ", "shuffled_answer_index", "valid_mcq"]

#: Types a four-option question can have ("order" is a yes/no question).
MCQ_TYPES = ("beginning", "end", "after", "before", "earliest")
#: Option text for "nothing happens there" (``{"event": null}``), by question type.
NOTHING_OPTION = {
    "after": "Nothing, the video ends there.",
    "before": "Nothing, the video starts there.",
}


@dataclass(frozen=True)
class _Option:
    event: int | None  # true index; None for "nothing" or a made-up event
    text: str
    made_up: bool = False  # a {"text": ...} option: never correct


@dataclass(frozen=True)
class ValidMCQ:
    """A validated question with its final options (positions balanced)."""

    number: int  # 1-based position in the model's reply; part of the id
    question: TemporalQuestion
    text: str
    options: list[_Option]
    answer_index: int
    shuffled_exact: int | None  # the true index that answers it under the shuffled order

    @property
    def option_texts(self) -> list[str]:
        return [o.text for o in self.options]

    def index_of(self, event: int | None) -> int:
        return next(k for k, o in enumerate(self.options) if not o.made_up and o.event == event)


def valid_mcq(video: PreparedVideo, entry: Any, number: int, seen: set[str]) -> ValidMCQ:
    """The question of one true-order reply item, or :class:`ItemError` saying why not.

    ``seen`` holds the normalised texts of the video's questions accepted so far.
    """
    if not isinstance(entry, Mapping):
        raise ItemError(f"item is {type(entry).__name__}, not an object")
    n = len(video.scenes)
    kind = entry.get("type")
    if kind == "order":
        raise ItemError("type 'order' is a yes/no question, not a four-option one")
    if kind not in MCQ_TYPES:
        raise ItemError(f"unknown question type {kind!r}")
    text = item_text(entry, "question")
    if normalise_text(text) in seen:
        raise ItemError("duplicate question")
    options = _options(video, entry.get("options"), kind)
    if kind == "earliest":
        # The candidates are the events offered; the model's anchors add nothing.
        candidates = tuple(o.event for o in options if not o.made_up and o.event is not None)
        if len(candidates) < 2:
            raise ItemError("'earliest' needs at least two event options")
        question = TemporalQuestion("earliest", candidates)  # type: ignore[arg-type]
    else:
        question = tagged_question(entry, n, MCQ_TYPES)
    true_exact = answer_event(question, list(range(n)))
    correct = [k for k, o in enumerate(options) if not o.made_up and o.event == true_exact]
    if not correct:
        raise ItemError("no option is correct under the scene order")
    if option_letter(entry.get("answer")) != correct[0]:
        raise ItemError("model's answer disagrees with the scene order")

    shuffled_exact = answer_event(question, list(video.permutation))
    options = _with_option(video, options, shuffled_exact, keep=correct[0], kind=question.question_type)
    shuffled = next(k for k, o in enumerate(options) if not o.made_up and o.event == shuffled_exact)
    options, answer_index = _balance(options, correct[0], shuffled, video.video_id, number)
    return ValidMCQ(
        number=number,
        question=question,
        text=text,
        options=options,
        answer_index=answer_index,
        shuffled_exact=shuffled_exact,
    )


def shuffled_answer_index(mcq: ValidMCQ, entry: Mapping[str, Any] | None) -> int:
    """The option index that answers ``mcq`` under the shuffled order, once the model's
    shuffled-order answer ``entry`` agrees with it; :class:`ItemError` otherwise."""
    if entry is None:
        raise ItemError("no answer in the shuffled-order reply")
    chosen = option_letter(entry.get("answer"))
    expected = mcq.index_of(mcq.shuffled_exact)
    if chosen != expected:
        raise ItemError(
            f"model's shuffled answer {OPTION_LETTERS[chosen]} disagrees with the shuffled scene "
            f"order ({OPTION_LETTERS[expected]})"
        )
    return expected


def _options(video: PreparedVideo, raw: Any, kind: Any) -> list[_Option]:
    """The four options of a reply item, with texts written from the captions."""
    if not isinstance(raw, list) or len(raw) != len(OPTION_LETTERS):
        raise ItemError(f"needs exactly {len(OPTION_LETTERS)} options")
    n = len(video.scenes)
    event_texts = {normalise_text(event_sentence(s.caption)) for s in video.scenes}
    options: list[_Option] = []
    for value in raw:
        if not isinstance(value, Mapping) or len(value.keys() & {"event", "text"}) != 1:
            raise ItemError(f"option {value!r} is neither {{'event': N}} nor {{'text': ...}}")
        if "text" in value:
            text = item_text(value, "text")
            if normalise_text(text) in event_texts:
                raise ItemError("made-up option repeats an event of the video")
            options.append(_Option(None, text[:1].upper() + text[1:], made_up=True))
        elif value["event"] is None:
            if kind not in NOTHING_OPTION:
                raise ItemError(f"'nothing' option in a {kind!r} question")
            options.append(_Option(None, NOTHING_OPTION[kind]))
        else:
            event = event_number(value["event"], n, "option event") - 1
            options.append(_Option(event, event_sentence(video.scenes[event].caption)))
    _check_distinct(options)
    return options


def _check_distinct(options: list[_Option]) -> None:
    keys = [("text", normalise_text(o.text)) if o.made_up else ("event", o.event) for o in options]
    texts = [normalise_text(o.text) for o in options]
    if len(set(keys)) != len(keys):
        raise ItemError("two options name the same event")
    if len(set(texts)) != len(texts):
        # E.g. two scenes with the same caption: the viewer could not tell the options apart.
        raise ItemError("two options read the same")


def _with_option(
    video: PreparedVideo, options: list[_Option], event: int | None, *, keep: int, kind: str
) -> list[_Option]:
    """``options`` with one for ``event`` (the shuffled order's answer), replacing a
    distractor when missing: a made-up one first, else the last other one. The options
    must answer the shuffled video too, and most distractors the model picks do not."""
    if any(not o.made_up and o.event == event for o in options):
        return options
    replaceable = [k for k, o in enumerate(options) if k != keep]
    made_up = [k for k in replaceable if options[k].made_up]
    slot = (made_up or replaceable)[-1]
    text = NOTHING_OPTION[kind] if event is None else event_sentence(video.scenes[event].caption)
    updated = list(options)
    updated[slot] = _Option(event, text)
    _check_distinct(updated)
    return updated


def _balance(
    options: list[_Option], correct: int, shuffled: int, video_id: str, number: int
) -> tuple[list[_Option], int]:
    """Options reordered so the correct one sits at a deterministic target letter, and
    the shuffled order's answer (when another option) at a second one.

    Targets cycle from per-video starts, so a video's questions use different letters and
    letters even out over many videos, for both benchmarks; the remaining options are
    shuffled with a per-item seed. Deterministic, so re-runs give the same prompts (and
    cache hits).
    """
    size = len(options)
    start, start_shuffled = stable_int(video_id, "correct", bits=32), stable_int(video_id, "shuffled", bits=32)
    target = (start + number - 1) % size
    placed = {target: options[correct]}
    if shuffled != correct:
        placed[(target + 1 + (start_shuffled + number - 1) % (size - 1)) % size] = options[shuffled]
    rest = [o for k, o in enumerate(options) if k not in (correct, shuffled)]
    rest = [rest[k] for k in stable_rng(video_id, number).permutation(len(rest))]
    ordered = [placed[k] if k in placed else rest.pop() for k in range(size)]
    return ordered, target

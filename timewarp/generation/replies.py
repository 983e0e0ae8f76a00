"""Reading and checking an LLM's JSON replies: the reply as a whole (malformed: the engine
asks again) and its items one by one (unusable: the item is rejected with a reason)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from timewarp.generation.records import OPTION_LETTERS
from timewarp.generation.temporal import TemporalQuestion

__all__ = [
    "ItemError",
    "ParsedReply",
    "answer_event",
    "answers_by_question",
    "event_number",
    "item_text",
    "numbered_events",
    "option_letter",
    "parse_answers",
    "parse_items",
    "parse_json_reply",
    "parse_questions",
    "tagged_question",
]

_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n?(.*?)\n?```$", re.DOTALL)
# Viewers see the video, not our numbered list: "event 3" in a text is a leak.
_NUMBER_LEAK = re.compile(r"\b(?:event|scene|caption)s?\s*(?:#|no\.?|number)?\s*\d", re.IGNORECASE)
_ANCHOR_COUNT = {"beginning": (0, 0), "end": (0, 0), "after": (1, 1), "before": (1, 1), "order": (2, 2)}


@dataclass(frozen=True)
class ParsedReply:
    """A reply's JSON list under ``key`` plus the raw text, kept for rejection records."""

    entries: list[Any]
    text: str


class ItemError(ValueError):
    """One item of a parsed reply is unusable; the message is the rejection reason."""


def parse_json_reply(text: str, key: str) -> ParsedReply:
    """The non-empty list ``reply[key]`` of a JSON-object reply.

    Tolerates a markdown code fence or prose around the object (small local models add
    them); anything else malformed raises ValueError so the engine asks again.
    """
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        data = json.loads(body)
    except ValueError:
        start, end = body.find("{"), body.rfind("}")
        if start < 0 or end <= start:
            raise ValueError("reply holds no JSON object") from None
        data = json.loads(body[start : end + 1])  # its ValueError is the reason recorded
    if not isinstance(data, dict):
        raise ValueError(f"reply is JSON {type(data).__name__}, not an object")
    entries = data.get(key)
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"reply has no non-empty list {key!r}")
    return ParsedReply(entries=entries, text=text)


def parse_items(text: str) -> ParsedReply:
    return parse_json_reply(text, "items")


def parse_questions(text: str) -> ParsedReply:
    return parse_json_reply(text, "questions")


def parse_answers(text: str) -> ParsedReply:
    return parse_json_reply(text, "answers")


def answers_by_question(reply: ParsedReply) -> dict[int, Mapping[str, Any]]:
    """Answers keyed by their 1-based question number (position when unnumbered)."""
    answers: dict[int, Mapping[str, Any]] = {}
    for position, entry in enumerate(reply.entries, start=1):
        if not isinstance(entry, Mapping):
            continue
        number = entry.get("question", position)
        if isinstance(number, (int, str)) and not isinstance(number, bool) and str(number).strip().isdigit():
            answers.setdefault(int(number), entry)
    return answers


def numbered_events(captions: Sequence[str]) -> str:
    """Captions as the numbered event list the prompts show."""
    # One line per event, so newlines inside a caption cannot fake a list entry.
    return "\n".join(f"{k}. {' '.join(caption.split())}" for k, caption in enumerate(captions, start=1))


def answer_event(question: TemporalQuestion, order: list[int]) -> int | None:
    """The event (true index) an answer to ``question`` names under ``order``; for
    ``order`` questions, whichever anchor comes first (the prompts' convention)."""
    value = question.answer(order)
    if isinstance(value, bool):  # before the int check: bool is an int
        return question.anchors[0] if value else question.anchors[1]
    return value


def event_number(value: Any, n: int, what: str) -> int:
    """A 1-based event number from the reply, range-checked."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ItemError(f"{what} {value!r} is not an event number")
    try:
        number = int(value)
    except ValueError:
        raise ItemError(f"{what} {value!r} is not an event number") from None
    if not 1 <= number <= n:
        raise ItemError(f"{what} {number} out of range 1..{n}")
    return number


def item_text(item: Mapping[str, Any], key: str) -> str:
    """``item[key]`` as one line of text that names no event number."""
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ItemError(f"missing or empty {key!r}")
    text = " ".join(value.split())
    if _NUMBER_LEAK.search(text):
        raise ItemError(f"{key!r} mentions event numbers: {text!r}")
    return text


def option_letter(value: Any) -> int:
    """The option index an answer letter ("B", "b.", "(C)") stands for."""
    if isinstance(value, str):
        letter = value.strip().strip(".():").upper()
        if len(letter) == 1 and letter in OPTION_LETTERS:
            return OPTION_LETTERS.index(letter)
    raise ItemError(f"answer {value!r} is not one of the letters {', '.join(OPTION_LETTERS)}")


def tagged_question(entry: Mapping[str, Any], n: int, allowed: Sequence[str]) -> TemporalQuestion:
    """The tagged question (anchors as true indices) of a true-order reply item."""
    kind = entry.get("type")
    if kind not in allowed:
        raise ItemError(f"unknown question type {kind!r}")
    raw = entry.get("anchors", [])
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise ItemError(f"anchors {raw!r} is not a list")
    anchors = tuple(event_number(a, n, "anchor") - 1 for a in raw)
    low, high = _ANCHOR_COUNT.get(kind, (2, n))
    if not low <= len(anchors) <= high or len(set(anchors)) != len(anchors):
        expected = f"{low}" if low == high else f"{low} to {high}"
        raise ItemError(f"type {kind!r} needs {expected} distinct anchors, got {list(raw)}")
    return TemporalQuestion(kind, anchors)

"""Exact answers to temporal questions under a given order of a video's events.

An event is a kept scene, named by its index in true order; an order is the list of event
indices as a video shows them (``range(n)`` for the original, the permutation for the
shuffled video). Every backend's answers can be checked against these functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from timewarp.data.scenes import SceneSpan

MAX_PHRASE_WORDS = 30


@dataclass(frozen=True)
class TemporalQuestion:
    """A question about event order: its type and the events it names.

    ``beginning``/``end``: no anchor; ``after``/``before``: ``anchors=(x,)``;
    ``order``: ``anchors=(a, b)`` ("does a happen before b?");
    ``earliest``: ``anchors`` = the candidate events.
    """

    question_type: str
    anchors: tuple[int, ...] = ()

    def answer(self, order: list[int]) -> int | bool | None:
        """The event index (or True/False for ``order``; None when nothing comes
        after/before the anchor) that answers the question for ``order``."""
        position = {event: k for k, event in enumerate(order)}
        kind = self.question_type
        if kind == "beginning":
            return order[0]
        if kind == "end":
            return order[-1]
        if kind in ("after", "before"):
            k = position[self.anchors[0]] + (1 if kind == "after" else -1)
            return order[k] if 0 <= k < len(order) else None
        if kind == "order":
            a, b = self.anchors
            return position[a] < position[b]
        if kind == "earliest":
            return min(self.anchors, key=position.__getitem__)
        raise ValueError(f"unknown question type {kind!r}")


def event_phrase(caption: str) -> str:
    """A short name for an event: the caption's first sentence, lower-cased first letter,
    no final period, at most ``MAX_PHRASE_WORDS`` words."""
    first = re.split(r"(?<=[.!?])\s+", caption.strip(), maxsplit=1)[0].rstrip(".!? ")
    words = first.split()
    if len(words) > MAX_PHRASE_WORDS:
        first = " ".join(words[:MAX_PHRASE_WORDS]) + "..."
    if first[:1].isupper() and not first[1:2].isupper():
        first = first[0].lower() + first[1:]
    return first


def event_sentence(caption: str) -> str:
    """The event phrase as a sentence."""
    phrase = event_phrase(caption)
    return phrase[:1].upper() + phrase[1:] + "."


def event_names(scenes: list[SceneSpan]) -> list[str]:
    return [event_phrase(scene.caption) for scene in scenes]

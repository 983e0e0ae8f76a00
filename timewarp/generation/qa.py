"""Open-ended training questions from an LLM's reply: each names its answer event, checked
exactly against the true order (``chosen``) and the shuffled order (``rejected``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from timewarp.data.corpus import PreparedVideo
from timewarp.generation.records import QUESTION_TYPES
from timewarp.generation.replies import ItemError, answer_event, event_number, item_text, tagged_question
from timewarp.generation.temporal import TemporalQuestion
from timewarp.text import normalise_text

__all__ = ["ValidQA", "rejected_answer", "valid_qa"]


@dataclass(frozen=True)
class ValidQA:
    """A validated training question (anchors and answer as true indices)."""

    number: int  # 1-based position in the model's reply; part of the id
    question: TemporalQuestion
    text: str
    answer: str


def valid_qa(video: PreparedVideo, entry: Any, number: int, seen: set[str]) -> ValidQA:
    """The question of one true-order reply item, or :class:`ItemError` saying why not.

    ``seen`` holds the normalised texts of the video's questions accepted so far.
    """
    if not isinstance(entry, Mapping):
        raise ItemError(f"item is {type(entry).__name__}, not an object")
    n = len(video.scenes)
    question = tagged_question(entry, n, QUESTION_TYPES)
    text = item_text(entry, "question")
    if normalise_text(text) in seen:
        raise ItemError("duplicate question")
    answer = item_text(entry, "answer")
    if "answer_event" not in entry:
        raise ItemError("missing 'answer_event'")
    claimed = entry["answer_event"]
    claimed_event = None if claimed is None else event_number(claimed, n, "answer_event") - 1
    if claimed_event != answer_event(question, list(range(n))):
        raise ItemError("answer disagrees with the scene order")
    return ValidQA(number=number, question=question, text=text, answer=answer)


def rejected_answer(video: PreparedVideo, qa: ValidQA, entry: Mapping[str, Any] | None) -> str:
    """The shuffled-order answer ``entry`` to ``qa``, once it is right for the shuffled
    order and says something else than the chosen answer; :class:`ItemError` otherwise."""
    if entry is None:
        raise ItemError("no answer in the shuffled-order reply")
    text = item_text(entry, "answer")
    if normalise_text(text) == normalise_text(qa.answer):
        raise ItemError("rejected equals chosen")
    if "answer_event" not in entry:
        raise ItemError("missing 'answer_event' in the shuffled-order reply")
    claimed = entry["answer_event"]
    perm = list(video.permutation)
    # Numbers in the shuffled prompt count the shuffled list: event k is perm[k-1].
    claimed_event = None if claimed is None else perm[event_number(claimed, len(perm), "answer_event") - 1]
    if claimed_event != answer_event(qa.question, perm):
        raise ItemError("shuffled-order answer disagrees with the shuffled scene order")
    return text

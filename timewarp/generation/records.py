"""Typed records of the generated text data and the interface every generator implements.

A generator turns prepared videos (scene captions in true and shuffled order) into:
- SFT pairs and explicit preference pairs for training videos, and
- normal and shuffled multiple-choice benchmark items for benchmark videos,
recording every item it could not produce as a :class:`GenerationRejection`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from timewarp.data.corpus import PreparedVideo

OPTION_LETTERS = "ABCD"

# Question types shared by every backend (an LLM backend tags its items with these too).
QUESTION_TYPES = ("beginning", "end", "after", "before", "order", "earliest")


@dataclass(frozen=True)
class SFTPair:
    id: str
    video_id: str
    question: str
    answer: str
    question_type: str
    generator: str


@dataclass(frozen=True)
class PreferencePair:
    """A DPO pair. Explicit: ``chosen`` answers under the true scene order, ``rejected``
    under the shuffled order; the model is shown the ORIGINAL video during training (as for
    every source)."""

    id: str
    video_id: str
    question: str
    chosen: str
    rejected: str
    question_type: str
    permutation: list[int]
    generator: str
    # The dataset the pair comes from (PAIR_SOURCES); a Combined set keeps each pair's own.
    source: str = "timewarp-explicit"
    # Implicit pairs: how the rejected answer's frames were corrupted ("none": the clean
    # frames with the imagined-events prompt); empty for the other sources.
    corruption: str = ""


#: Where a preference pair comes from: explicit (true vs shuffled order answers), implicit
#: (the model's own answers on clean vs corrupted frames) and LLaVA-Hound's DPO set.
PAIR_SOURCES = ("timewarp-explicit", "timewarp-implicit", "llava-hound")


@dataclass(frozen=True)
class MCQItem:
    """One four-option benchmark question. ``answer_index`` is correct for the true
    order; ``shuffled_answer_index`` for the shuffled video (same options)."""

    id: str
    video_id: str
    question: str
    options: list[str]
    answer_index: int
    shuffled_answer_index: int
    question_type: str
    generator: str

    @property
    def answer_letter(self) -> str:
        return OPTION_LETTERS[self.answer_index]

    @property
    def shuffled_answer_letter(self) -> str:
        return OPTION_LETTERS[self.shuffled_answer_index]

    def question_with_options(self) -> str:
        """The question as the paper's benchmark files hold it: options numbered."""
        lines = [self.question] + [f"{OPTION_LETTERS[i]}. {text}" for i, text in enumerate(self.options)]
        return "\n".join(lines)


@dataclass(frozen=True)
class GenerationRejection:
    """An item a generator could not produce (malformed LLM reply, too few events...)."""

    video_id: str
    task: str  # training | benchmark
    reason: str
    reply_text: str = ""


@dataclass
class TrainingText:
    sft: list[SFTPair] = field(default_factory=list)
    preferences: list[PreferencePair] = field(default_factory=list)
    rejections: list[GenerationRejection] = field(default_factory=list)


@dataclass
class BenchmarkText:
    items: list[MCQItem] = field(default_factory=list)
    rejections: list[GenerationRejection] = field(default_factory=list)


class TextGenerator(Protocol):
    """What every backend (template, openai, transformers) provides."""

    name: str

    def describe(self) -> dict[str, Any]:
        """Generator, model, prompt version and parameters, for artifact metadata. Never
        holds secrets."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters of the model calls made so far (requests, cache hits, retries, tokens);
        empty for a backend that calls no model."""
        ...

    def training_text(self, videos: list[PreparedVideo], questions_per_video: int) -> TrainingText:
        """SFT pairs and preference pairs, ``questions_per_video`` per video where possible."""
        ...

    def benchmark_text(self, videos: list[PreparedVideo], mcq_per_video: int) -> BenchmarkText:
        """Four-option questions with answers for both the true and the shuffled order."""
        ...

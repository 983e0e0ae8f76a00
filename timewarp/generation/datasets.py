"""The generated datasets as they travel between steps: records plus where their media is
and which generator made them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from timewarp.generation.records import GenerationRejection, MCQItem, PreferencePair, SFTPair

BENCHMARK_VARIANTS = ("normal", "shuffled")


@dataclass
class SFTDataset:
    pairs: list[SFTPair]
    media_root: str = ""  # the corpus folder holding videos/ and frames/
    generator: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreferenceDataset:
    pairs: list[PreferencePair]
    media_root: str = ""
    generator: dict[str, Any] = field(default_factory=dict)


@dataclass
class MCQBenchmark:
    """Four-option questions scored on the original video (``normal``) or on the shuffled
    one (``shuffled``: same questions and options, answers for the shuffled order)."""

    items: list[MCQItem]
    variant: str
    media_root: str = ""
    generator: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.variant not in BENCHMARK_VARIANTS:
            raise ValueError(f"variant must be one of {BENCHMARK_VARIANTS}, got {self.variant!r}")

    def answer_index(self, item: MCQItem) -> int:
        return item.answer_index if self.variant == "normal" else item.shuffled_answer_index


@dataclass
class GenerationLog:
    """Items the generator could not produce, with reasons (and the reply text for LLMs)."""

    rejections: list[GenerationRejection] = field(default_factory=list)

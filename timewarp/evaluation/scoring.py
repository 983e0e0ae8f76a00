"""Scoring a video-LLM on a four-option TimeWarp benchmark (normal or shuffled video).

Both scorers show the model the same thing: ``frames_per_video`` frames spread evenly over
the ORIGINAL video (normal variant) or over the SHUFFLED video (shuffled variant), as
training samples them (:func:`~timewarp.models.frames.select_frames`), and the prompt
of :func:`mcq_prompt`: the question, its lettered options and "Answer with the option's
letter.". Everything goes through the family adapter's ``encode``, so the chat format is
the one the model was trained with.

- ``generation``: greedy decoding, items batched and re-padded left
  (:func:`~timewarp.models.generate.generate_replies`). The reply (new tokens only) goes through
  :func:`~timewarp.evaluation.extract.extract_option`; no option found counts as wrong.
- ``loglik``: the option whose answer the model finds most likely, by the summed
  log-probability of the completion ``encode`` marks (the answer plus the end-of-turn
  token, as DPO training scores it). The answer is the option's LETTER alone: the prompt
  asks for the letter, so this scores exactly the reply the generation scorer hopes for,
  and the answers are equally short (a letter token; real tokenizers have one per letter),
  whereas option texts differ in length and a summed log-probability favours short texts.

- ``text_loglik``: the question WITHOUT its options, as training prompts ask it, and each
  option's TEXT as the answer; the option with the highest summed log-probability wins. It
  measures what open-ended SFT and DPO teach a model that never learnt the lettered
  format: the scorer of the embedded default's tiny models, whose template answers are the
  option sentences themselves ("Blue scene.", one token a colour). The sum is fair when
  options differ only in a name of similar length, as there; it favours short options when
  they differ in length, and dividing by the length would favour names split into more
  (near-certain) tokens instead, so long free-text options are better scored by letter.

Both log-likelihood scorers score ``batch_size`` items at a time with
:func:`~timewarp.evaluation.loglik.most_likely_answers`: each batch's videos and prompts
run once, in one forward that keeps the KV cache, and every item's answers are scored from
that cache in a second forward (padding masked, positions as for the item alone, so the
scores equal one item at a time; :mod:`timewarp.evaluation.loglik` has the details).

This module must not import zenml.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from timewarp.data.corpus import PreparedVideo, VideoCorpus
from timewarp.evaluation.extract import extract_option
from timewarp.evaluation.loglik import most_likely_answers
from timewarp.evaluation.report import ItemResult
from timewarp.generation.datasets import MCQBenchmark
from timewarp.generation.records import OPTION_LETTERS, MCQItem
from timewarp.models.base import VideoLLMFamily, VideoSample
from timewarp.models.frames import select_frames
from timewarp.models.generate import generate_replies

__all__ = [
    "INSTRUCTION",
    "SCORERS",
    "ScoringConfig",
    "generate_replies",
    "lettered_prompt",
    "mcq_prompt",
    "score_benchmark",
    "score_benchmarks",
    "score_generation",
    "score_loglik",
    "score_text_loglik",
    "scorer",
]

INSTRUCTION: Final = "Answer with the option's letter."

#: A scorer: (model, processor, family, benchmark, corpus, config) -> one result per item.
Scorer = Callable[..., list[ItemResult]]

#: Scorer name -> function, in registration order (filled by :func:`scorer`).
_SCORER_FUNCTIONS: dict[str, Scorer] = {}


def scorer(name: str) -> Callable[[Scorer], Scorer]:
    """Decorator registering a scorer function under ``name`` (as lmms-eval registers its
    tasks); ``ScoringConfig.scorers`` selects scorers by these names."""

    def register(function: Scorer) -> Scorer:
        if name in _SCORER_FUNCTIONS:
            raise ValueError(f"a scorer named {name!r} is already registered ({_SCORER_FUNCTIONS[name].__name__})")
        _SCORER_FUNCTIONS[name] = function
        return function

    return register


def lettered_prompt(question: str, options: Sequence[str]) -> str:
    """The user's text for a question and its options (at most four): the question, the
    options lettered as benchmark files hold them, and :data:`INSTRUCTION`."""
    lettered = [f"{OPTION_LETTERS[index]}. {text}" for index, text in enumerate(options)]
    return "\n".join([question, *lettered, INSTRUCTION])


def mcq_prompt(item: MCQItem) -> str:
    """The user's text for an item, identical for both scorers."""
    return lettered_prompt(item.question, item.options)


# ---- frames ---------------------------------------------------------------------------


class _VariantFrames:
    """Frames a benchmark variant shows for a video: the original video's for ``normal``,
    the shuffled video's for ``shuffled``, subsampled like training. Keeps the last few
    videos, since a video's items are usually adjacent."""

    def __init__(self, corpus: VideoCorpus, variant: str, frames_per_video: int, cache_size: int = 16) -> None:
        self._corpus = corpus
        self._variant = variant
        self._count = frames_per_video
        self._videos: dict[str, PreparedVideo] = {v.video_id: v for v in corpus.videos}
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def __call__(self, video_id: str) -> np.ndarray:
        if video_id in self._cache:
            self._cache.move_to_end(video_id)
            return self._cache[video_id]
        try:
            video = self._videos[video_id]
        except KeyError:
            raise KeyError(f"video {video_id!r} is not in the corpus at {self._corpus.root}") from None
        shown = self._corpus.frames(video) if self._variant == "normal" else self._corpus.shuffled_frames(video)
        frames = select_frames(shown, self._count)
        self._cache[video_id] = frames
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return frames


def _samples(benchmark: MCQBenchmark, corpus: VideoCorpus, frames_per_video: int) -> Iterator[VideoSample]:
    frames = _VariantFrames(corpus, benchmark.variant, frames_per_video)
    for item in benchmark.items:
        yield VideoSample(frames(item.video_id), mcq_prompt(item))


def _result(item: MCQItem, benchmark: MCQBenchmark, predicted: int | None) -> ItemResult:
    answer = benchmark.answer_index(item)
    return ItemResult(item.id, item.question_type, benchmark.variant, predicted == answer, predicted, answer, item.video_id)


# ---- generation scorer -----------------------------------------------------------------


@scorer("generation")
def score_generation(
    model: Any,
    processor: Any,
    family: VideoLLMFamily,
    benchmark: MCQBenchmark,
    corpus: VideoCorpus,
    config: ScoringConfig,
) -> list[ItemResult]:
    replies = generate_replies(
        model,
        processor,
        family,
        _samples(benchmark, corpus, config.frames_per_video),
        batch_size=config.batch_size,
        max_new_tokens=config.max_new_tokens,
        total=len(benchmark.items),
        desc=f"generation scorer ({benchmark.variant})",
    )
    return [
        _result(item, benchmark, extract_option(reply, item.options))
        for item, reply in zip(benchmark.items, replies, strict=True)
    ]


# ---- log-likelihood scorers ---------------------------------------------------------------


@scorer("loglik")
def score_loglik(
    model: Any,
    processor: Any,
    family: VideoLLMFamily,
    benchmark: MCQBenchmark,
    corpus: VideoCorpus,
    config: ScoringConfig,
) -> list[ItemResult]:
    samples = _samples(benchmark, corpus, config.frames_per_video)
    queries = (
        (sample, list(OPTION_LETTERS[: len(item.options)]))
        for item, sample in zip(benchmark.items, samples, strict=True)
    )
    return _most_likely_results(model, processor, family, benchmark, config, queries, "loglik scorer")


@scorer("text_loglik")
def score_text_loglik(
    model: Any,
    processor: Any,
    family: VideoLLMFamily,
    benchmark: MCQBenchmark,
    corpus: VideoCorpus,
    config: ScoringConfig,
) -> list[ItemResult]:
    frames = _VariantFrames(corpus, benchmark.variant, config.frames_per_video)
    queries = ((VideoSample(frames(item.video_id), item.question), item.options) for item in benchmark.items)
    return _most_likely_results(model, processor, family, benchmark, config, queries, "text log-likelihood scorer")


def _most_likely_results(
    model: Any,
    processor: Any,
    family: VideoLLMFamily,
    benchmark: MCQBenchmark,
    config: ScoringConfig,
    queries: Iterable[tuple[VideoSample, Sequence[str]]],
    scorer_desc: str,
) -> list[ItemResult]:
    """One result per item: the answer of its query (sample, answers) the model finds most likely."""
    picks = most_likely_answers(
        model,
        processor,
        family,
        queries,
        batch_size=config.batch_size,
        total=len(benchmark.items),
        desc=f"{scorer_desc} ({benchmark.variant})",
    )
    return [_result(item, benchmark, pick) for item, pick in zip(benchmark.items, picks, strict=True)]


# ---- all ------------------------------------------------------------------------------------

#: Names of the registered scorers, in registration order.
SCORERS: Final = tuple(_SCORER_FUNCTIONS)


@dataclass(frozen=True)
class ScoringConfig:
    frames_per_video: int = 8
    batch_size: int = 8  # items per generate call, and per forward of the log-likelihood scorers
    max_new_tokens: int = 16
    scorers: tuple[str, ...] = SCORERS

    def __post_init__(self) -> None:
        unknown = [s for s in self.scorers if s not in SCORERS]
        if unknown or not self.scorers:
            raise ValueError(f"scorers must be a non-empty subset of {SCORERS}, got {self.scorers}")
        if self.frames_per_video < 1 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("frames_per_video, batch_size and max_new_tokens must be >= 1")


def score_benchmark(
    model: Any,
    processor: Any,
    family: VideoLLMFamily,
    benchmark: MCQBenchmark,
    corpus: VideoCorpus,
    config: ScoringConfig = ScoringConfig(),
) -> dict[str, list[ItemResult]]:
    """One :class:`ItemResult` per item of ``benchmark`` for each scorer of ``config``,
    keyed by scorer name. The model is scored in eval mode (its mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        return {
            name: _SCORER_FUNCTIONS[name](model, processor, family, benchmark, corpus, config)
            for name in config.scorers
        }
    finally:
        model.train(was_training)


def score_benchmarks(
    model: Any,
    processor: Any,
    family: VideoLLMFamily,
    benchmarks: Iterable[MCQBenchmark],
    corpus: VideoCorpus,
    config: ScoringConfig = ScoringConfig(),
) -> dict[str, list[ItemResult]]:
    """:func:`score_benchmark` over several benchmarks (the normal and the shuffled
    variant), each scorer's results concatenated in order."""
    results: dict[str, list[ItemResult]] = {name: [] for name in config.scorers}
    for benchmark in benchmarks:
        for name, items in score_benchmark(model, processor, family, benchmark, corpus, config).items():
            results[name].extend(items)
    return results

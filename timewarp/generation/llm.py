"""LLM-backed text generator: the paper's stages 5 and 6 on any chat engine.

The engine is anything with ``generate_parsed_many(list_of_messages, parse, attempts=3,
desc=...)`` returning, per request, the parsed value, a :class:`ParseRejection` or a
:class:`ChatFailure` (the OpenAI-compatible :class:`~timewarp.generation.chat.ChatClient`,
or a local transformers engine with the same method).

Prompts show a video's events as a numbered list of scene captions in the order the video
shows them and ask for strict JSON in which every question is tagged with its type and
the numbers of the events it names. That makes every answer checkable exactly with
:class:`TemporalQuestion`:

* training: the true-order answer (``chosen``) and the shuffled-order answer
  (``rejected``) each name an ``answer_event`` that must match the exact answer under
  that order; questions whose exact answer is the same under both orders are dropped
  before the second call (the ``rejected`` answer would be correct too).
* benchmark: options are event numbers whose texts our code writes from the captions;
  the model's letters for both orders are checked against the exact answers, and the
  correct option's position is balanced over A-D in code.

Everything that is not emitted becomes a :class:`GenerationRejection` with its reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from timewarp.corpus import PreparedVideo
from timewarp.generation.chat import ChatFailure, ChatSettings, ParseRejection
from timewarp.generation.prompts import PROMPT_NAMES, PROMPT_VERSION, load_prompt, prompt_fingerprint
from timewarp.generation.records import (
    OPTION_LETTERS,
    QUESTION_TYPES,
    BenchmarkText,
    GenerationRejection,
    MCQItem,
    PreferencePair,
    SFTPair,
    TrainingText,
)
from timewarp.generation.temporal import TemporalQuestion, event_sentence

__all__ = [
    "MCQ_TYPES",
    "LLMGenerator",
    "ParsedReply",
    "ParsingEngine",
    "answer_event",
    "describe_chat_settings",
    "normalise_text",
    "parse_json_reply",
]

T = TypeVar("T")
Message = dict[str, Any]

#: Types a four-option question can have ("order" is a yes/no question).
MCQ_TYPES = ("beginning", "end", "after", "before", "earliest")
#: Option text for "nothing happens there" (``{"event": null}``), by question type.
NOTHING_OPTION = {
    "after": "Nothing, the video ends there.",
    "before": "Nothing, the video starts there.",
}
_ANCHOR_COUNT = {"beginning": (0, 0), "end": (0, 0), "after": (1, 1), "before": (1, 1), "order": (2, 2)}
# Viewers see the video, not our numbered list: "event 3" in a text is a leak.
_NUMBER_LEAK = re.compile(r"\b(?:event|scene|caption)s?\s*(?:#|no\.?|number)?\s*\d", re.IGNORECASE)


class ParsingEngine(Protocol):
    """What :class:`LLMGenerator` needs from an engine."""

    def generate_parsed_many(
        self,
        list_of_messages: list[list[Message]],
        parse: Callable[[str], T],
        attempts: int = 3,
        *,
        desc: str = ...,
    ) -> list[T | ParseRejection | ChatFailure]: ...


# --------------------------------------------------------------------------- #
# Reply parsing (raises ValueError, which makes the engine retry)
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class ParsedReply:
    """A reply's JSON list under ``key`` plus the raw text, kept for rejection records."""

    entries: list[Any]
    text: str


_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n?(.*?)\n?```$", re.DOTALL)


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


def _parse_items(text: str) -> ParsedReply:
    return parse_json_reply(text, "items")


def _parse_questions(text: str) -> ParsedReply:
    return parse_json_reply(text, "questions")


def _parse_answers(text: str) -> ParsedReply:
    return parse_json_reply(text, "answers")


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


class _ItemError(ValueError):
    """One item of a parsed reply is unusable; the message is the rejection reason."""


def normalise_text(text: str) -> str:
    """Lower case, punctuation and extra spaces removed: for "says the same" checks."""
    return " ".join(re.sub(r"[\W_]+", " ", text.lower()).split())


def answer_event(question: TemporalQuestion, order: list[int]) -> int | None:
    """The event (true index) an answer to ``question`` names under ``order``; for
    ``order`` questions, whichever anchor comes first (the prompts' convention)."""
    value = question.answer(order)
    if isinstance(value, bool):  # before the int check: bool is an int
        return question.anchors[0] if value else question.anchors[1]
    return value


def _numbered(captions: Sequence[str]) -> str:
    # One line per event, so newlines inside a caption cannot fake a list entry.
    return "\n".join(f"{k}. {' '.join(caption.split())}" for k, caption in enumerate(captions, start=1))


def _event_number(value: Any, n: int, what: str) -> int:
    """A 1-based event number from the reply, range-checked."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _ItemError(f"{what} {value!r} is not an event number")
    try:
        number = int(value)
    except ValueError:
        raise _ItemError(f"{what} {value!r} is not an event number") from None
    if not 1 <= number <= n:
        raise _ItemError(f"{what} {number} out of range 1..{n}")
    return number


def _text(item: Mapping[str, Any], key: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _ItemError(f"missing or empty {key!r}")
    text = " ".join(value.split())
    if _NUMBER_LEAK.search(text):
        raise _ItemError(f"{key!r} mentions event numbers: {text!r}")
    return text


def _letter(value: Any) -> int:
    if isinstance(value, str):
        letter = value.strip().strip(".():").upper()
        if len(letter) == 1 and letter in OPTION_LETTERS:
            return OPTION_LETTERS.index(letter)
    raise _ItemError(f"answer {value!r} is not one of the letters {', '.join(OPTION_LETTERS)}")


def _safe_url(url: str) -> str:
    """``url`` without user info, query or fragment (where credentials could hide)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def describe_chat_settings(settings: ChatSettings) -> dict[str, Any]:
    """The reply-shaping settings of a chat endpoint, for artifact metadata. No secrets:
    ChatSettings holds none, and the URL loses any user info or query."""
    # Mirrors the openai client's own default when no base_url is set.
    base_url = settings.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    return {
        "model": settings.model,
        "base_url": _safe_url(base_url),
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
        "seed": settings.seed,
        "concurrency": settings.concurrency,
    }


@dataclass(frozen=True)
class _QA:
    """A validated training question (anchors and answer as true indices)."""

    number: int  # 1-based position in the model's reply; part of the id
    question: TemporalQuestion
    text: str
    answer: str


@dataclass(frozen=True)
class _Option:
    event: int | None  # true index; None for "nothing" or a made-up event
    text: str
    made_up: bool = False  # a {"text": ...} option: never correct


@dataclass(frozen=True)
class _MCQ:
    """A validated question with its final options (positions balanced)."""

    number: int
    question: TemporalQuestion
    text: str
    options: list[_Option]
    answer_index: int
    shuffled_exact: int | None  # the true index that answers it under the shuffled order

    def index_of(self, event: int | None) -> int:
        return next(k for k, o in enumerate(self.options) if not o.made_up and o.event == event)


def _target_starts(video_id: str) -> tuple[int, int]:
    # sha256, not hash(): the same on every run and machine.
    digest = hashlib.sha256(video_id.encode()).digest()
    return int.from_bytes(digest[:4], "big"), int.from_bytes(digest[4:8], "big")


# --------------------------------------------------------------------------- #
# Generator
# --------------------------------------------------------------------------- #


class LLMGenerator:
    """:class:`~timewarp.generation.records.TextGenerator` on top of a chat engine.

    Args:
        engine: has ``generate_parsed_many`` (see :class:`ParsingEngine`) and, optionally,
            ``describe() -> dict`` and ``stats() -> dict``.
        name: the generator name written into every record.
        attempts: replies asked for per request until one parses.
        engine_description: overrides what :meth:`describe` says about the engine.
        closers: called by :meth:`close` (e.g. the response cache's close).
    """

    def __init__(
        self,
        engine: ParsingEngine,
        *,
        name: str = "llm",
        attempts: int = 3,
        engine_description: Mapping[str, Any] | None = None,
        closers: Sequence[Callable[[], None]] = (),
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        self.engine = engine
        self.name = name
        self.attempts = attempts
        self._engine_description = dict(engine_description) if engine_description is not None else None
        self._closers = list(closers)
        # Loaded now, so a missing prompt file fails at construction, not mid-run.
        self._prompts = {key: load_prompt(key) for key in PROMPT_NAMES}

    # -- metadata ---------------------------------------------------------- #

    def describe(self) -> dict[str, Any]:
        if self._engine_description is not None:
            engine = dict(self._engine_description)
        elif callable(getattr(self.engine, "describe", None)):
            engine = dict(self.engine.describe())  # type: ignore[attr-defined]
        elif isinstance(getattr(self.engine, "settings", None), ChatSettings):
            engine = describe_chat_settings(self.engine.settings)  # type: ignore[attr-defined]
        else:
            engine = {"engine": type(self.engine).__name__}
        return {
            **engine,
            "generator": self.name,
            "prompt_version": PROMPT_VERSION,
            "prompt_sha256": prompt_fingerprint(),
            "attempts": self.attempts,
        }

    def stats(self) -> dict[str, int]:
        """The engine's call counters (requests, cache hits, tokens) where it keeps them."""
        stats = getattr(self.engine, "stats", None)
        return dict(stats()) if callable(stats) else {}

    def close(self) -> None:
        close = getattr(self.engine, "close", None)
        if callable(close):
            close()
        for closer in self._closers:
            closer()

    def __enter__(self) -> LLMGenerator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- engine plumbing ----------------------------------------------------- #

    def _run(self, requests: list[list[Message]], parse: Callable[[str], ParsedReply], desc: str) -> list[Any]:
        if not requests:
            return []
        return list(self.engine.generate_parsed_many(requests, parse, attempts=self.attempts, desc=desc))

    @staticmethod
    def _reply(result: Any, video_id: str, task: str, rejections: list[GenerationRejection]) -> ParsedReply | None:
        """The parsed reply, or None after recording why there is none."""
        if isinstance(result, ParsedReply):
            return result
        # Duck-typed so an engine with its own (same-shaped) records works too.
        if isinstance(result, ParseRejection) or hasattr(result, "reply_text"):
            reason = f"malformed reply: {result.reason}"
            rejections.append(GenerationRejection(video_id, task, reason, result.reply_text))
        elif isinstance(result, ChatFailure) or hasattr(result, "kind"):
            rejections.append(GenerationRejection(video_id, task, f"LLM call failed ({result.kind}): {result.error}"))
        else:
            rejections.append(GenerationRejection(video_id, task, f"unexpected engine result {type(result).__name__}"))
        return None

    @staticmethod
    def _by_question(reply: ParsedReply) -> dict[int, Mapping[str, Any]]:
        """Answers keyed by their 1-based question number (position when unnumbered)."""
        answers: dict[int, Mapping[str, Any]] = {}
        for position, entry in enumerate(reply.entries, start=1):
            if not isinstance(entry, Mapping):
                continue
            number = entry.get("question", position)
            if isinstance(number, (int, str)) and not isinstance(number, bool) and str(number).strip().isdigit():
                answers.setdefault(int(number), entry)
        return answers

    # -- training (stage 5) -------------------------------------------------- #

    def training_text(self, videos: list[PreparedVideo], questions_per_video: int) -> TrainingText:
        if questions_per_video < 1:
            raise ValueError(f"questions_per_video must be >= 1, got {questions_per_video}")
        out = TrainingText()
        usable = self._usable(videos, "training", out.rejections)
        prompt = self._prompts["qa"]
        requests = [
            prompt.render(events=_numbered([s.caption for s in v.scenes]), count=questions_per_video) for v in usable
        ]
        results = self._run(requests, _parse_items, "QA pairs (true order)")

        pending: list[tuple[PreparedVideo, list[_QA]]] = []
        for video, result in zip(usable, results, strict=True):
            reply = self._reply(result, video.video_id, "training", out.rejections)
            if reply is None:
                continue
            items = self._training_items(video, reply, questions_per_video, out)
            if items:
                pending.append((video, items))

        prompt = self._prompts["answer_shuffled"]
        requests = [
            prompt.render(
                events=_numbered([s.caption for s in video.shuffled_scenes]),
                questions="\n".join(f"Q{k}. {qa.text}" for k, qa in enumerate(items, start=1)),
            )
            for video, items in pending
        ]
        results = self._run(requests, _parse_answers, "QA answers (shuffled order)")
        for (video, items), result in zip(pending, results, strict=True):
            reply = self._reply(result, video.video_id, "training", out.rejections)
            if reply is None:
                continue
            answers = self._by_question(reply)
            for k, qa in enumerate(items, start=1):
                item_id = f"{video.video_id}-q{qa.number}"
                try:
                    rejected = self._rejected_answer(video, qa, answers.get(k))
                except _ItemError as exc:
                    reason = f"{item_id}: {exc}"
                    out.rejections.append(GenerationRejection(video.video_id, "training", reason, reply.text))
                    continue
                out.preferences.append(
                    PreferencePair(
                        id=item_id,
                        video_id=video.video_id,
                        question=qa.text,
                        chosen=qa.answer,
                        rejected=rejected,
                        question_type=qa.question.question_type,
                        permutation=list(video.permutation),
                        generator=self.name,
                    )
                )
        return out

    def _training_items(
        self, video: PreparedVideo, reply: ParsedReply, wanted: int, out: TrainingText
    ) -> list[_QA]:
        """Validated questions of one reply; SFT pairs for all of them, and the ones worth
        a shuffled answer (a different exact answer under the shuffled order)."""
        n = len(video.scenes)
        true_order = list(range(n))
        if len(reply.entries) < wanted:
            out.rejections.append(
                GenerationRejection(
                    video.video_id, "training", f"reply has {len(reply.entries)} of {wanted} questions", reply.text
                )
            )
        seen: set[str] = set()
        items: list[_QA] = []
        for number, entry in enumerate(reply.entries[:wanted], start=1):
            item_id = f"{video.video_id}-q{number}"
            try:
                qa = self._qa_item(entry, number, n, seen)
            except _ItemError as exc:
                out.rejections.append(GenerationRejection(video.video_id, "training", f"{item_id}: {exc}", reply.text))
                continue
            seen.add(normalise_text(qa.text))
            out.sft.append(
                SFTPair(
                    id=item_id,
                    video_id=video.video_id,
                    question=qa.text,
                    answer=qa.answer,
                    question_type=qa.question.question_type,
                    generator=self.name,
                )
            )
            if qa.question.answer(true_order) == qa.question.answer(list(video.permutation)):
                out.rejections.append(
                    GenerationRejection(
                        video.video_id,
                        "training",
                        f"{item_id}: same exact answer under the shuffled order; a rejected answer would be correct",
                        reply.text,
                    )
                )
                continue
            items.append(qa)
        return items

    @staticmethod
    def _qa_item(entry: Any, number: int, n: int, seen: set[str]) -> _QA:
        if not isinstance(entry, Mapping):
            raise _ItemError(f"item is {type(entry).__name__}, not an object")
        question = _question(entry, n, QUESTION_TYPES)
        text = _text(entry, "question")
        if normalise_text(text) in seen:
            raise _ItemError("duplicate question")
        answer = _text(entry, "answer")
        if "answer_event" not in entry:
            raise _ItemError("missing 'answer_event'")
        claimed = entry["answer_event"]
        claimed_event = None if claimed is None else _event_number(claimed, n, "answer_event") - 1
        if claimed_event != answer_event(question, list(range(n))):
            raise _ItemError("answer disagrees with the scene order")
        return _QA(number=number, question=question, text=text, answer=answer)

    @staticmethod
    def _rejected_answer(video: PreparedVideo, qa: _QA, entry: Mapping[str, Any] | None) -> str:
        if entry is None:
            raise _ItemError("no answer in the shuffled-order reply")
        text = _text(entry, "answer")
        if normalise_text(text) == normalise_text(qa.answer):
            raise _ItemError("rejected equals chosen")
        if "answer_event" not in entry:
            raise _ItemError("missing 'answer_event' in the shuffled-order reply")
        claimed = entry["answer_event"]
        perm = list(video.permutation)
        # Numbers in the shuffled prompt count the shuffled list: event k is perm[k-1].
        claimed_event = None if claimed is None else perm[_event_number(claimed, len(perm), "answer_event") - 1]
        if claimed_event != answer_event(qa.question, perm):
            raise _ItemError("shuffled-order answer disagrees with the shuffled scene order")
        return text

    # -- benchmark (stage 6) ------------------------------------------------- #

    def benchmark_text(self, videos: list[PreparedVideo], mcq_per_video: int) -> BenchmarkText:
        if mcq_per_video < 1:
            raise ValueError(f"mcq_per_video must be >= 1, got {mcq_per_video}")
        out = BenchmarkText()
        usable = self._usable(videos, "benchmark", out.rejections)
        prompt = self._prompts["mcq"]
        requests = [
            prompt.render(events=_numbered([s.caption for s in v.scenes]), count=mcq_per_video) for v in usable
        ]
        results = self._run(requests, _parse_questions, "MCQs (true order)")

        pending: list[tuple[PreparedVideo, list[_MCQ]]] = []
        for video, result in zip(usable, results, strict=True):
            reply = self._reply(result, video.video_id, "benchmark", out.rejections)
            if reply is None:
                continue
            if len(reply.entries) < mcq_per_video:
                out.rejections.append(
                    GenerationRejection(
                        video.video_id,
                        "benchmark",
                        f"reply has {len(reply.entries)} of {mcq_per_video} questions",
                        reply.text,
                    )
                )
            seen: set[str] = set()
            items: list[_MCQ] = []
            for number, entry in enumerate(reply.entries[:mcq_per_video], start=1):
                try:
                    mcq = self._mcq_item(video, entry, number, seen)
                except _ItemError as exc:
                    reason = f"{video.video_id}-q{number}: {exc}"
                    out.rejections.append(GenerationRejection(video.video_id, "benchmark", reason, reply.text))
                    continue
                seen.add(normalise_text(mcq.text))
                items.append(mcq)
            if items:
                pending.append((video, items))

        prompt = self._prompts["mcq_shuffled"]
        requests = [
            prompt.render(
                events=_numbered([s.caption for s in video.shuffled_scenes]),
                questions="\n\n".join(
                    "\n".join(
                        [f"Q{k}. {mcq.text}"]
                        + [f"{OPTION_LETTERS[i]}. {o.text}" for i, o in enumerate(mcq.options)]
                    )
                    for k, mcq in enumerate(items, start=1)
                ),
            )
            for video, items in pending
        ]
        results = self._run(requests, _parse_answers, "MCQ answers (shuffled order)")
        for (video, items), result in zip(pending, results, strict=True):
            reply = self._reply(result, video.video_id, "benchmark", out.rejections)
            if reply is None:
                continue
            answers = self._by_question(reply)
            for k, mcq in enumerate(items, start=1):
                item_id = f"{video.video_id}-q{mcq.number}"
                entry = answers.get(k)
                try:
                    if entry is None:
                        raise _ItemError("no answer in the shuffled-order reply")
                    chosen = _letter(entry.get("answer"))
                    expected = mcq.index_of(mcq.shuffled_exact)
                    if chosen != expected:
                        raise _ItemError(
                            f"model's shuffled answer {OPTION_LETTERS[chosen]} disagrees with the shuffled scene "
                            f"order ({OPTION_LETTERS[expected]})"
                        )
                except _ItemError as exc:
                    reason = f"{item_id}: {exc}"
                    out.rejections.append(GenerationRejection(video.video_id, "benchmark", reason, reply.text))
                    continue
                out.items.append(
                    MCQItem(
                        id=item_id,
                        video_id=video.video_id,
                        question=mcq.text,
                        options=[o.text for o in mcq.options],
                        answer_index=mcq.answer_index,
                        shuffled_answer_index=expected,
                        question_type=mcq.question.question_type,
                        generator=self.name,
                    )
                )
        return out

    @staticmethod
    def _mcq_item(video: PreparedVideo, entry: Any, number: int, seen: set[str]) -> _MCQ:
        if not isinstance(entry, Mapping):
            raise _ItemError(f"item is {type(entry).__name__}, not an object")
        n = len(video.scenes)
        kind = entry.get("type")
        if kind == "order":
            raise _ItemError("type 'order' is a yes/no question, not a four-option one")
        if kind not in MCQ_TYPES:
            raise _ItemError(f"unknown question type {kind!r}")
        text = _text(entry, "question")
        if normalise_text(text) in seen:
            raise _ItemError("duplicate question")
        options = _options(video, entry.get("options"), kind)
        if kind == "earliest":
            # The candidates are the events offered; the model's anchors add nothing.
            candidates = tuple(o.event for o in options if not o.made_up and o.event is not None)
            if len(candidates) < 2:
                raise _ItemError("'earliest' needs at least two event options")
            question = TemporalQuestion("earliest", candidates)  # type: ignore[arg-type]
        else:
            question = _question(entry, n, MCQ_TYPES)
        true_exact = answer_event(question, list(range(n)))
        correct = [k for k, o in enumerate(options) if not o.made_up and o.event == true_exact]
        if not correct:
            raise _ItemError("no option is correct under the scene order")
        if _letter(entry.get("answer")) != correct[0]:
            raise _ItemError("model's answer disagrees with the scene order")

        shuffled_exact = answer_event(question, list(video.permutation))
        options = _with_option(video, options, shuffled_exact, keep=correct[0], kind=question.question_type)
        shuffled = next(k for k, o in enumerate(options) if not o.made_up and o.event == shuffled_exact)
        options, answer_index = _balance(options, correct[0], shuffled, video.video_id, number)
        return _MCQ(
            number=number,
            question=question,
            text=text,
            options=options,
            answer_index=answer_index,
            shuffled_exact=shuffled_exact,
        )

    # -- shared -------------------------------------------------------------- #

    @staticmethod
    def _usable(videos: list[PreparedVideo], task: str, rejections: list[GenerationRejection]) -> list[PreparedVideo]:
        usable = []
        for video in videos:
            if len(video.scenes) < 2:
                rejections.append(GenerationRejection(video.video_id, task, "fewer than 2 events"))
            else:
                usable.append(video)
        return usable


def _question(entry: Mapping[str, Any], n: int, allowed: Sequence[str]) -> TemporalQuestion:
    """The tagged question (anchors as true indices) of a true-order reply item."""
    kind = entry.get("type")
    if kind not in allowed:
        raise _ItemError(f"unknown question type {kind!r}")
    raw = entry.get("anchors", [])
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise _ItemError(f"anchors {raw!r} is not a list")
    anchors = tuple(_event_number(a, n, "anchor") - 1 for a in raw)
    low, high = _ANCHOR_COUNT.get(kind, (2, n))
    if not low <= len(anchors) <= high or len(set(anchors)) != len(anchors):
        expected = f"{low}" if low == high else f"{low} to {high}"
        raise _ItemError(f"type {kind!r} needs {expected} distinct anchors, got {list(raw)}")
    return TemporalQuestion(kind, anchors)


def _options(video: PreparedVideo, raw: Any, kind: Any) -> list[_Option]:
    """The four options of a reply item, with texts written from the captions."""
    if not isinstance(raw, list) or len(raw) != len(OPTION_LETTERS):
        raise _ItemError(f"needs exactly {len(OPTION_LETTERS)} options")
    n = len(video.scenes)
    event_texts = {normalise_text(event_sentence(s.caption)) for s in video.scenes}
    options: list[_Option] = []
    for value in raw:
        if not isinstance(value, Mapping) or len(value.keys() & {"event", "text"}) != 1:
            raise _ItemError(f"option {value!r} is neither {{'event': N}} nor {{'text': ...}}")
        if "text" in value:
            text = _text(value, "text")
            if normalise_text(text) in event_texts:
                raise _ItemError("made-up option repeats an event of the video")
            options.append(_Option(None, text[:1].upper() + text[1:], made_up=True))
        elif value["event"] is None:
            if kind not in NOTHING_OPTION:
                raise _ItemError(f"'nothing' option in a {kind!r} question")
            options.append(_Option(None, NOTHING_OPTION[kind]))
        else:
            event = _event_number(value["event"], n, "option event") - 1
            options.append(_Option(event, event_sentence(video.scenes[event].caption)))
    _check_distinct(options)
    return options


def _check_distinct(options: list[_Option]) -> None:
    keys = [("text", normalise_text(o.text)) if o.made_up else ("event", o.event) for o in options]
    texts = [normalise_text(o.text) for o in options]
    if len(set(keys)) != len(keys):
        raise _ItemError("two options name the same event")
    if len(set(texts)) != len(texts):
        # E.g. two scenes with the same caption: the viewer could not tell the options apart.
        raise _ItemError("two options read the same")


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
    start, start_shuffled = _target_starts(video_id)
    target = (start + number - 1) % size
    placed = {target: options[correct]}
    if shuffled != correct:
        placed[(target + 1 + (start_shuffled + number - 1) % (size - 1)) % size] = options[shuffled]
    rest = [o for k, o in enumerate(options) if k not in (correct, shuffled)]
    random.Random(f"{video_id}-q{number}").shuffle(rest)  # str seeds hash stably (sha512)
    ordered = [placed[k] if k in placed else rest.pop() for k in range(size)]
    return ordered, target

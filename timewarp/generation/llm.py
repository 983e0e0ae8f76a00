"""LLM-backed text generator: the paper's stages 5 and 6 on any :class:`Engine`.

Prompts show a video's events as a numbered list of scene captions in the order the video
shows them and ask for strict JSON in which every question is tagged with its type and
the numbers of the events it names. That makes every answer checkable exactly with
:class:`TemporalQuestion`:

* training (:mod:`~timewarp.generation.qa`): the true-order answer (``chosen``) and the
  shuffled-order answer (``rejected``) each name an ``answer_event`` that must match the
  exact answer under that order; questions whose exact answer is the same under both
  orders are dropped before the second call (the ``rejected`` answer would be correct too).
* benchmark (:mod:`~timewarp.generation.mcq`): options are event numbers whose texts our
  code writes from the captions; the model's letters for both orders are checked against
  the exact answers, and the correct option's position is balanced over A-D in code.

Both run the same two passes: ask for questions on the true order, validate each item,
then ask for answers on the shuffled order and validate those. Everything that is not
emitted becomes a :class:`GenerationRejection` with its reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from timewarp.data.corpus import PreparedVideo
from timewarp.generation.engine import ChatFailure, Engine, ParseRejection
from timewarp.generation.mcq import ValidMCQ, shuffled_answer_index, valid_mcq
from timewarp.generation.prompts import PROMPT_NAMES, PROMPT_VERSION, load_prompt, prompt_fingerprint
from timewarp.generation.qa import ValidQA, rejected_answer, valid_qa
from timewarp.generation.records import (
    OPTION_LETTERS,
    BenchmarkText,
    GenerationRejection,
    MCQItem,
    PreferencePair,
    SFTPair,
    TrainingText,
)
from timewarp.generation.replies import (
    ItemError,
    ParsedReply,
    answers_by_question,
    numbered_events,
    parse_answers,
    parse_items,
    parse_questions,
)
from timewarp.text import normalise_text

__all__ = ["LLMGenerator"]

Item = TypeVar("Item", ValidQA, ValidMCQ)
# Validates one true-order reply item: (video, entry, its 1-based number, normalised texts seen).
Validate = Callable[[PreparedVideo, Any, int, set[str]], Item]


class LLMGenerator:
    """:class:`~timewarp.generation.records.TextGenerator` on top of an :class:`Engine`.

    Args:
        engine: the chat model; closed by :meth:`close`.
        name: the generator name written into every record.
        attempts: replies asked for per request until one parses.
        closers: also called by :meth:`close` (e.g. the response cache's close).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        name: str = "llm",
        attempts: int = 3,
        closers: Sequence[Callable[[], None]] = (),
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        self.engine = engine
        self.name = name
        self.attempts = attempts
        self._closers = list(closers)
        # Loaded now, so a missing prompt file fails at construction, not mid-run.
        self._prompts = {key: load_prompt(key) for key in PROMPT_NAMES}

    # -- metadata and lifecycle ------------------------------------------------ #

    def describe(self) -> dict[str, Any]:
        return {
            **self.engine.describe(),
            "generator": self.name,
            "prompt_version": PROMPT_VERSION,
            "prompt_sha256": prompt_fingerprint(),
            "attempts": self.attempts,
        }

    def stats(self) -> dict[str, int]:
        """The engine's counters: requests, cache hits, retries, failures, tokens."""
        return self.engine.stats()

    def close(self) -> None:
        self.engine.close()
        for closer in self._closers:
            closer()

    def __enter__(self) -> LLMGenerator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- training (stage 5) ------------------------------------------------------ #

    def training_text(self, videos: list[PreparedVideo], questions_per_video: int) -> TrainingText:
        if questions_per_video < 1:
            raise ValueError(f"questions_per_video must be >= 1, got {questions_per_video}")
        out = TrainingText()
        asked = self._questions(
            "training", videos, "qa", parse_items, "QA pairs (true order)", questions_per_video, valid_qa,
            out.rejections,
        )
        pending: list[tuple[PreparedVideo, list[ValidQA]]] = []
        for video, reply, items in asked:
            worth_asking = []
            for qa in items:
                item_id = f"{video.video_id}-q{qa.number}"
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
                if qa.question.answer(list(range(len(video.scenes)))) == qa.question.answer(list(video.permutation)):
                    reason = "same exact answer under the shuffled order; a rejected answer would be correct"
                    rejection = GenerationRejection(video.video_id, "training", f"{item_id}: {reason}", reply.text)
                    out.rejections.append(rejection)
                else:
                    worth_asking.append(qa)
            if worth_asking:
                pending.append((video, worth_asking))

        def questions(items: list[ValidQA]) -> str:
            return "\n".join(f"Q{k}. {qa.text}" for k, qa in enumerate(items, start=1))

        answered = self._answers(
            "training", pending, "answer_shuffled", "QA answers (shuffled order)", questions, rejected_answer,
            out.rejections,
        )
        for video, qa, item_id, rejected in answered:
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

    # -- benchmark (stage 6) ----------------------------------------------------- #

    def benchmark_text(self, videos: list[PreparedVideo], mcq_per_video: int) -> BenchmarkText:
        if mcq_per_video < 1:
            raise ValueError(f"mcq_per_video must be >= 1, got {mcq_per_video}")
        out = BenchmarkText()
        asked = self._questions(
            "benchmark", videos, "mcq", parse_questions, "MCQs (true order)", mcq_per_video, valid_mcq, out.rejections
        )
        pending = [(video, items) for video, _, items in asked if items]

        def with_options(items: list[ValidMCQ]) -> str:
            return "\n\n".join(
                "\n".join([f"Q{k}. {mcq.text}"] + [f"{OPTION_LETTERS[i]}. {o}" for i, o in enumerate(mcq.option_texts)])
                for k, mcq in enumerate(items, start=1)
            )

        def check(video: PreparedVideo, mcq: ValidMCQ, entry: Mapping[str, Any] | None) -> int:
            return shuffled_answer_index(mcq, entry)

        answered = self._answers(
            "benchmark", pending, "mcq_shuffled", "MCQ answers (shuffled order)", with_options, check, out.rejections
        )
        for video, mcq, item_id, shuffled_index in answered:
            out.items.append(
                MCQItem(
                    id=item_id,
                    video_id=video.video_id,
                    question=mcq.text,
                    options=mcq.option_texts,
                    answer_index=mcq.answer_index,
                    shuffled_answer_index=shuffled_index,
                    question_type=mcq.question.question_type,
                    generator=self.name,
                )
            )
        return out

    # -- the two passes both flows share ------------------------------------------ #

    def _questions(
        self,
        task: str,
        videos: list[PreparedVideo],
        prompt_name: str,
        parse: Callable[[str], ParsedReply],
        desc: str,
        wanted: int,
        validate: Validate[Item],
        rejections: list[GenerationRejection],
    ) -> list[tuple[PreparedVideo, ParsedReply, list[Item]]]:
        """Pass 1: ``wanted`` questions per video on the true order, each item validated."""
        usable = []
        for video in videos:
            if len(video.scenes) < 2:
                rejections.append(GenerationRejection(video.video_id, task, "fewer than 2 events"))
            else:
                usable.append(video)
        prompt = self._prompts[prompt_name]
        requests = [
            prompt.render(events=numbered_events([s.caption for s in v.scenes]), count=wanted) for v in usable
        ]
        asked = []
        for video, reply in zip(usable, self._ask(task, usable, requests, parse, desc, rejections), strict=True):
            if reply is None:
                continue
            if len(reply.entries) < wanted:
                reason = f"reply has {len(reply.entries)} of {wanted} questions"
                rejections.append(GenerationRejection(video.video_id, task, reason, reply.text))
            seen: set[str] = set()
            items: list[Item] = []
            for number, entry in enumerate(reply.entries[:wanted], start=1):
                try:
                    item = validate(video, entry, number, seen)
                except ItemError as exc:
                    reason = f"{video.video_id}-q{number}: {exc}"
                    rejections.append(GenerationRejection(video.video_id, task, reason, reply.text))
                    continue
                seen.add(normalise_text(item.text))
                items.append(item)
            asked.append((video, reply, items))
        return asked

    def _answers(
        self,
        task: str,
        pending: list[tuple[PreparedVideo, list[Item]]],
        prompt_name: str,
        desc: str,
        render_questions: Callable[[list[Item]], str],
        check: Callable[[PreparedVideo, Item, Mapping[str, Any] | None], Any],
        rejections: list[GenerationRejection],
    ) -> list[tuple[PreparedVideo, Item, str, Any]]:
        """Pass 2: the questions answered on the shuffled order; ``(video, item, item id,
        check's value)`` for every answer ``check`` accepts."""
        prompt = self._prompts[prompt_name]
        requests = [
            prompt.render(
                events=numbered_events([s.caption for s in video.shuffled_scenes]), questions=render_questions(items)
            )
            for video, items in pending
        ]
        videos = [video for video, _ in pending]
        replies = self._ask(task, videos, requests, parse_answers, desc, rejections)
        accepted = []
        for (video, items), reply in zip(pending, replies, strict=True):
            if reply is None:
                continue
            answers = answers_by_question(reply)
            for k, item in enumerate(items, start=1):
                item_id = f"{video.video_id}-q{item.number}"
                try:
                    value = check(video, item, answers.get(k))
                except ItemError as exc:
                    rejections.append(GenerationRejection(video.video_id, task, f"{item_id}: {exc}", reply.text))
                    continue
                accepted.append((video, item, item_id, value))
        return accepted

    def _ask(
        self,
        task: str,
        videos: list[PreparedVideo],
        requests: list[list[dict[str, Any]]],
        parse: Callable[[str], ParsedReply],
        desc: str,
        rejections: list[GenerationRejection],
    ) -> list[ParsedReply | None]:
        """The parsed reply per video, None (and a rejection saying why) where there is none."""
        if not requests:
            return []
        results = self.engine.generate_parsed_many(requests, parse, attempts=self.attempts, desc=desc)
        replies: list[ParsedReply | None] = []
        for video, result in zip(videos, results, strict=True):
            if isinstance(result, ParseRejection):
                reason = f"malformed reply: {result.reason}"
                rejections.append(GenerationRejection(video.video_id, task, reason, result.reply_text))
                replies.append(None)
            elif isinstance(result, ChatFailure):
                reason = f"LLM call failed ({result.kind}): {result.error}"
                rejections.append(GenerationRejection(video.video_id, task, reason))
                replies.append(None)
            else:
                replies.append(result)
        return replies

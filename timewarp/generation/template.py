"""The offline, deterministic generator: temporal questions written from scene captions,
with answers correct by construction for the true and the shuffled order.

Every question names events by their captions and asks about their order, so it can only
be answered from the order of events; the answers come from :class:`TemporalQuestion`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from timewarp.data.corpus import PreparedVideo
from timewarp.generation.records import (
    OPTION_LETTERS,
    BenchmarkText,
    GenerationRejection,
    MCQItem,
    PreferencePair,
    SFTPair,
    TrainingText,
)
from timewarp.generation.temporal import TemporalQuestion, event_names
from timewarp.seeding import stable_rng

TEMPLATE_VERSION = "template-v2"

QUESTIONS = {
    "beginning": [
        "What happens at the beginning of the video?",
        "What is the first thing that happens in the video?",
        "How does the video start?",
    ],
    "end": [
        "What happens at the end of the video?",
        "What is the last thing that happens in the video?",
        "How does the video end?",
    ],
    "after": [
        "What happens right after {a}?",
        "Once {a}, what happens next?",
        "What comes immediately after the moment when {a}?",
    ],
    "before": [
        "What happens right before {a}?",
        "What happens just before the moment when {a}?",
        "Before {a}, what happens immediately?",
    ],
    "order": [
        "Does the part where {a} come before the part where {b}?",
        "In the video, is the moment when {a} earlier than the moment when {b}?",
    ],
    "earliest": [
        "Which of these happens first in the video: {options}?",
        "Of the following, which comes first: {options}?",
    ],
}
NOTHING_AFTER = "Nothing else happens after that; it is the last event of the video."
NOTHING_BEFORE = "Nothing happens before that; it is the first event of the video."
YES = "Yes. First {a}, and later {b}."
NO = "No. First {b}, and only later {a}."
# Options of a benchmark question whose answer may be "no event".
OPTION_NOTHING = {"after": "Nothing; the video ends there.", "before": "Nothing; the video starts there."}
MCQ_TYPES = ("beginning", "end", "after", "before")


def _candidates(count: int, with_pairs: bool) -> list[TemporalQuestion]:
    questions = [TemporalQuestion("beginning"), TemporalQuestion("end")]
    questions += [TemporalQuestion("after", (i,)) for i in range(count)]
    questions += [TemporalQuestion("before", (i,)) for i in range(count)]
    if with_pairs:
        questions += [TemporalQuestion("order", pair) for pair in itertools.permutations(range(count), 2)]
        questions += [TemporalQuestion("earliest", trio) for trio in itertools.combinations(range(count), 3)]
    return questions


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


class TemplateGenerator:
    """Questions and answers from templates; no model, no network, same output for a seed."""

    name = "template"

    def __init__(self, seed: int = 0, question_types: Sequence[str] | None = None):
        self.seed = seed
        self.question_types = tuple(QUESTIONS) if question_types is None else tuple(question_types)
        unknown = set(self.question_types) - set(QUESTIONS)
        if unknown or not self.question_types:
            raise ValueError(f"question types must be a non-empty subset of {sorted(QUESTIONS)}, got {self.question_types}")

    def describe(self) -> dict[str, Any]:
        return {
            "generator": self.name, "model": "none", "prompt_version": TEMPLATE_VERSION, "seed": self.seed,
            "question_types": list(self.question_types),
        }

    def stats(self) -> dict[str, int]:
        return {}  # no model calls to count

    # -- wording ---------------------------------------------------------------------
    def _question(self, question: TemporalQuestion, names: list[str], rng: np.random.Generator) -> str:
        template = str(rng.choice(QUESTIONS[question.question_type]))
        anchors = [names[i] for i in question.anchors]
        if question.question_type == "earliest":
            return template.format(options="; ".join(anchors[:-1]) + "; or " + anchors[-1])
        return template.format(**dict(zip("ab", anchors)))

    def _answer(self, question: TemporalQuestion, order: list[int], names: list[str]) -> str:
        kind, outcome = question.question_type, question.answer(order)
        if kind == "order":
            a, b = (names[i] for i in question.anchors)
            return _sentence((YES if outcome else NO).format(a=a, b=b))
        if outcome is None:
            return NOTHING_AFTER if kind == "after" else NOTHING_BEFORE
        # The event's own sentence: the text a benchmark option holds, so training answers,
        # preference pairs and option scoring all compare the same strings.
        return _sentence(names[outcome]) + "."

    # -- training --------------------------------------------------------------------
    def training_text(self, videos: list[PreparedVideo], questions_per_video: int) -> TrainingText:
        result = TrainingText()
        for video in videos:
            names = event_names(video.scenes)
            rng = stable_rng(self.seed, video.video_id, "training")
            true_order = list(range(len(names)))
            picked = []
            # Round-robin over question types for diversity; a question is only usable
            # when the shuffled order answers it differently (else chosen == rejected).
            by_type: dict[str, list[TemporalQuestion]] = {}
            for question in _candidates(len(names), with_pairs=True):
                if question.question_type not in self.question_types:
                    continue
                if question.answer(true_order) is None or question.answer(true_order) == question.answer(video.permutation):
                    continue
                if len({names[i] for i in question.anchors}) < len(question.anchors) or len(set(names)) < len(names):
                    continue  # duplicated captions make a question ambiguous
                by_type.setdefault(question.question_type, []).append(question)
            types = list(by_type)
            rng.shuffle(types)
            for kind in types:
                rng.shuffle(by_type[kind])
            while len(picked) < questions_per_video and any(by_type.values()):
                for kind in types:
                    if by_type[kind] and len(picked) < questions_per_video:
                        picked.append(by_type[kind].pop())
            if len(picked) < questions_per_video:
                result.rejections.append(
                    GenerationRejection(
                        video.video_id, "training",
                        f"only {len(picked)} of {questions_per_video} questions have different answers "
                        "under the true and the shuffled order",
                    )
                )
            for k, question in enumerate(picked):
                text = self._question(question, names, rng)
                chosen = self._answer(question, true_order, names)
                rejected = self._answer(question, video.permutation, names)
                pair_id = f"{video.video_id}-q{k}"
                result.sft.append(SFTPair(pair_id, video.video_id, text, chosen, question.question_type, self.name))
                result.preferences.append(
                    PreferencePair(
                        pair_id, video.video_id, text, chosen, rejected, question.question_type,
                        list(video.permutation), self.name,
                    )
                )
        return result

    # -- benchmark -------------------------------------------------------------------
    def benchmark_text(self, videos: list[PreparedVideo], mcq_per_video: int) -> BenchmarkText:
        result = BenchmarkText()
        # The correct option's position cycles through A-D (each block of 4 in a seeded
        # order), so positions are balanced over the benchmark.
        slots = stable_rng(self.seed, "positions").permutation(len(OPTION_LETTERS))
        pool = [sentence for video in videos for sentence in self._option_texts(video)]
        for video in videos:
            rng = stable_rng(self.seed, video.video_id, "benchmark")
            items = self._video_mcqs(video, mcq_per_video, rng, pool, slots, len(result.items))
            result.items.extend(items)
            if len(items) < mcq_per_video:
                result.rejections.append(
                    GenerationRejection(
                        video.video_id, "benchmark", f"only {len(items)} of {mcq_per_video} questions could be built"
                    )
                )
        return result

    @staticmethod
    def _option_texts(video: PreparedVideo) -> list[str]:
        return [_sentence(name) + "." for name in event_names(video.scenes)]

    def _video_mcqs(
        self, video: PreparedVideo, wanted: int, rng: np.random.Generator, pool: list[str], slots: np.ndarray, offset: int
    ) -> list[MCQItem]:
        names = event_names(video.scenes)
        texts = self._option_texts(video)
        if len(set(texts)) < len(texts):
            return []  # duplicated captions: options would not be distinguishable
        true_order = list(range(len(names)))

        def option(kind: str, outcome: int | None) -> str:
            return OPTION_NOTHING[kind] if outcome is None else texts[outcome]

        candidates = [
            q for q in _candidates(len(names), with_pairs=False)
            if q.question_type in self.question_types and q.answer(true_order) is not None
        ]
        rng.shuffle(candidates)
        # Questions the shuffled video answers differently come first: they discriminate.
        candidates.sort(key=lambda q: q.answer(true_order) == q.answer(video.permutation))
        items = []
        for question in candidates:
            if len(items) == wanted:
                break
            kind = question.question_type
            correct = option(kind, question.answer(true_order))
            shuffled = option(kind, question.answer(video.permutation))
            anchors = {texts[i] for i in question.anchors}
            distractors = [t for t in texts if t not in anchors | {correct, shuffled}]
            if kind in OPTION_NOTHING:
                distractors.append(OPTION_NOTHING[kind])
            rng.shuffle(distractors)
            others = [t for t in dict.fromkeys([shuffled, *distractors]) if t != correct]
            if len(others) < 3:
                # Too few events of its own: borrow captions of other videos.
                extra = [t for t in pool if t not in set(texts) | set(others)]
                rng.shuffle(extra)
                others += extra[: 3 - len(others)]
            if len(others) < 3:
                continue
            options = others[:3]
            rng.shuffle(options)
            slot = int(slots[(offset + len(items)) % len(slots)])
            options.insert(slot, correct)
            items.append(
                MCQItem(
                    id=f"{video.video_id}-mcq{len(items)}",
                    video_id=video.video_id,
                    question=self._question(question, names, rng),
                    options=options,
                    answer_index=slot,
                    shuffled_answer_index=options.index(shuffled),
                    question_type=kind,
                    generator=self.name,
                )
            )
        return items

"""The data-quality report of generated text: counts, balance, duplicates, lengths, and
the hard violations that must fail a run."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from statistics import mean
from typing import Any

from timewarp.generation.records import OPTION_LETTERS, BenchmarkText, TrainingText
from timewarp.generation.splits import VideoSplit
from timewarp.text import normalise_text


class DataQualityError(ValueError):
    """Hard violations in generated data."""


@dataclass
class QualityReport:
    counts: dict[str, int]
    question_types: dict[str, dict[str, int]]
    answer_positions: dict[str, dict[str, int]]
    text_lengths: dict[str, dict[str, float]]
    duplicate_questions: int
    chosen_equals_rejected: int
    benchmark_answer_changes: int
    generation_rejections: int
    violations: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_metadata(self) -> dict[str, Any]:
        return {
            **{f"n_{k}": v for k, v in self.counts.items()},
            "question_types": self.question_types,
            "answer_positions": self.answer_positions,
            "duplicate_questions": self.duplicate_questions,
            "chosen_equals_rejected": self.chosen_equals_rejected,
            "benchmark_answer_changes": self.benchmark_answer_changes,
            "generation_rejections": self.generation_rejections,
            "violations": len(self.violations),
            "warnings": len(self.warnings),
        }

    def raise_on_violations(self) -> None:
        if self.violations:
            raise DataQualityError("generated data failed quality checks:\n- " + "\n- ".join(self.violations))


def _lengths(texts: list[str]) -> dict[str, float]:
    sizes = [len(t.split()) for t in texts] or [0]
    return {"min_words": min(sizes), "mean_words": round(mean(sizes), 2), "max_words": max(sizes)}


def build_report(training: TrainingText, benchmark: BenchmarkText, split: VideoSplit) -> QualityReport:
    violations: list[str] = []
    warnings: list[str] = []
    pairs, items = training.preferences, benchmark.items

    same = [p.id for p in pairs if normalise_text(p.chosen) == normalise_text(p.rejected)]
    if same:
        violations.append(f"{len(same)} preference pair(s) with chosen == rejected, e.g. {same[:3]}")
    empty = [p.id for p in pairs if not p.question.strip() or not p.chosen.strip() or not p.rejected.strip()]
    empty += [s.id for s in training.sft if not s.question.strip() or not s.answer.strip()]
    if empty:
        violations.append(f"{len(empty)} item(s) with empty text, e.g. {empty[:3]}")
    for item in items:
        distinct = {normalise_text(o) for o in item.options}
        if len(item.options) != len(OPTION_LETTERS) or len(distinct) != len(item.options):
            violations.append(f"{item.id}: needs {len(OPTION_LETTERS)} distinct options, has {item.options}")
        for index in (item.answer_index, item.shuffled_answer_index):
            if not 0 <= index < len(item.options):
                violations.append(f"{item.id}: answer index {index} out of range")
    if len(set(x.id for x in training.sft)) != len(training.sft) or len(set(x.id for x in items)) != len(items):
        violations.append("duplicate item ids")
    trained = {p.video_id for p in pairs} | {s.video_id for s in training.sft}
    leaked = sorted(set(split.benchmark_ids) & trained)
    if leaked and not split.paper_overlap:
        violations.append(f"{len(leaked)} benchmark video(s) also in training data, e.g. {leaked[:3]}")
    outside = sorted({i.video_id for i in items} - set(split.benchmark_ids))
    if outside:
        violations.append(f"{len(outside)} benchmark item(s) from non-benchmark videos, e.g. {outside[:3]}")

    # Within the training text and within the benchmark: a video in both is leakage,
    # reported above (or the paper's overlap, when asked for).
    duplicates_in_video = 0
    for questions in ([(s.video_id, s.question) for s in training.sft], [(i.video_id, i.question) for i in items]):
        counts = Counter((video_id, normalise_text(question)) for video_id, question in questions)
        duplicates_in_video += sum(n - 1 for n in counts.values() if n > 1)
    if duplicates_in_video:
        violations.append(f"{duplicates_in_video} question(s) repeated within one video")
    all_questions = [x.question for x in [*training.sft, *items]]
    duplicate_questions = len(all_questions) - len({normalise_text(q) for q in all_questions})

    positions = {
        "normal": dict(Counter(OPTION_LETTERS[i.answer_index] for i in items)),
        "shuffled": dict(Counter(OPTION_LETTERS[i.shuffled_answer_index] for i in items)),
    }
    if len(items) >= 4 * len(OPTION_LETTERS):
        counts = [positions["normal"].get(letter, 0) for letter in OPTION_LETTERS]
        if max(counts) - min(counts) > max(2, len(items) // 10):
            warnings.append(f"correct option positions are unbalanced: {positions['normal']}")
    changes = sum(i.answer_index != i.shuffled_answer_index for i in items)
    if items and changes == 0:
        warnings.append("no benchmark answer changes under shuffling: the shuffled benchmark cannot discriminate")

    return QualityReport(
        counts={
            "train_videos": len(split.train_ids),
            "benchmark_videos": len(split.benchmark_ids),
            "sft_pairs": len(training.sft),
            "preference_pairs": len(pairs),
            "benchmark_items": len(items),
        },
        question_types={
            "sft": dict(Counter(s.question_type for s in training.sft)),
            "preference": dict(Counter(p.question_type for p in pairs)),
            "benchmark": dict(Counter(i.question_type for i in items)),
        },
        answer_positions=positions,
        text_lengths={
            "question": _lengths([s.question for s in training.sft] + [i.question for i in items]),
            "chosen": _lengths([p.chosen for p in pairs]),
            "rejected": _lengths([p.rejected for p in pairs]),
            "option": _lengths([o for i in items for o in i.options]),
        },
        duplicate_questions=duplicate_questions,
        chosen_equals_rejected=len(same),
        benchmark_answer_changes=changes,
        generation_rejections=len(training.rejections) + len(benchmark.rejections),
        violations=violations,
        warnings=warnings,
    )

import json

import datasets
import pytest

from timewarp.generation.datasets import MCQBenchmark, PreferenceDataset, SFTDataset
from timewarp.generation.formats import export_text
from timewarp.generation.quality import DataQualityError, build_report
from timewarp.generation.records import BenchmarkText, PreferencePair, TrainingText
from timewarp.generation.splits import split_videos
from timewarp.generation.template import TemplateGenerator
from test_template_generator import make_video


@pytest.fixture(scope="module")
def generated():
    videos = [make_video(i, 3 + i % 4) for i in range(24)]
    split = split_videos([v.video_id for v in videos], 0.25, seed=0)
    generator = TemplateGenerator()
    training = generator.training_text([v for v in videos if v.video_id in split.train_ids], 3)
    benchmark = generator.benchmark_text([v for v in videos if v.video_id in split.benchmark_ids], 3)
    return videos, split, training, benchmark


def test_split_is_disjoint_stable_and_seeded():
    ids = [f"v{i}" for i in range(200)]
    split = split_videos(ids, 0.25, seed=0)
    assert not set(split.train_ids) & set(split.benchmark_ids)
    assert sorted(split.train_ids + split.benchmark_ids) == sorted(ids)
    assert 30 < len(split.benchmark_ids) < 70
    grown = split_videos(ids + [f"w{i}" for i in range(50)], 0.25, seed=0)
    assert set(split.benchmark_ids) <= set(grown.benchmark_ids)
    assert split_videos(ids, 0.25, seed=1).benchmark_ids != split.benchmark_ids
    overlap = split_videos(ids, 0.25, paper_overlap=True)
    assert overlap.train_ids == overlap.benchmark_ids == sorted(ids)
    tiny = split_videos(["a", "b"], 0.25)
    assert len(tiny.train_ids) == len(tiny.benchmark_ids) == 1


def test_report_counts_and_passes(generated):
    _, split, training, benchmark = generated
    report = build_report(training, benchmark, split)
    assert report.violations == []
    assert report.counts["preference_pairs"] == len(training.preferences)
    assert report.counts["benchmark_items"] == len(benchmark.items)
    assert sum(report.answer_positions["normal"].values()) == len(benchmark.items)
    assert report.chosen_equals_rejected == 0
    assert report.text_lengths["chosen"]["mean_words"] > 3
    report.raise_on_violations()


def test_leakage_and_bad_pairs_are_hard_violations(generated):
    videos, split, training, benchmark = generated
    leaked = split_videos([v.video_id for v in videos], 0.25, seed=0)
    generator = TemplateGenerator()
    leaky_training = generator.training_text(videos, 3)  # trains on benchmark videos too
    report = build_report(leaky_training, benchmark, leaked)
    assert any("benchmark video(s) also in training data" in v for v in report.violations)
    with pytest.raises(DataQualityError, match="also in training"):
        report.raise_on_violations()
    # The paper's overlap is allowed when asked for explicitly.
    overlap = split_videos([v.video_id for v in videos], 0.25, paper_overlap=True)
    assert not build_report(leaky_training, benchmark, overlap).violations

    # Punctuation and case do not make a different answer (the rule generation uses too).
    same = PreferencePair("x-q0", split.train_ids[0], "Q?", "Same, again.", "same again", "after", [1, 0], "template")
    bad = TrainingText(training.sft, training.preferences + [same], [])
    assert any("chosen == rejected" in v for v in build_report(bad, benchmark, split).violations)


def test_export_formats(generated, tmp_path):
    _, split, training, benchmark = generated
    sft = SFTDataset(training.sft, "/media", {"generator": "template"})
    preferences = PreferenceDataset(training.preferences, "/media", {"generator": "template"})
    normal, shuffled = MCQBenchmark(benchmark.items, "normal"), MCQBenchmark(benchmark.items, "shuffled")
    written = export_text(str(tmp_path), sft, preferences, normal, shuffled)
    assert set(written) == {
        "temporal_sft.json", "temporal_pref.json", "timewarp_normal_benchmark.json",
        "timewarp_shuffled_benchmark.json", "llava_hound_dpo.jsonl", "trl_preference/",
    }
    hound = [json.loads(line) for line in (tmp_path / "llava_hound_dpo.jsonl").read_text().splitlines()]
    assert set(hound[0]) == {"id", "video", "prompt", "answer", "chosen", "chosen_score", "rejected", "rejected_score"}
    assert len(hound) == len(training.preferences)
    normal_rows = json.loads((tmp_path / "timewarp_normal_benchmark.json").read_text())
    shuffled_rows = json.loads((tmp_path / "timewarp_shuffled_benchmark.json").read_text())
    assert [r["question"] for r in normal_rows] == [r["question"] for r in shuffled_rows]
    for row, item in zip(normal_rows, benchmark.items):
        assert row["answer"] == "ABCD"[item.answer_index] and row["answer_index"] == item.answer_index
        assert len(row["options"]) == 4 and "\nA. " in row["question"]
    assert [r["answer_index"] for r in shuffled_rows] == [i.shuffled_answer_index for i in benchmark.items]
    sft_rows = json.loads((tmp_path / "temporal_sft.json").read_text())
    assert set(sft_rows[0]) >= {"id", "question", "answer"}
    trl = datasets.load_from_disk(str(tmp_path / "trl_preference"))
    row = trl[0]
    assert row["prompt"][0]["role"] == "user" and row["prompt"][0]["content"][0]["type"] == "video"
    assert row["chosen"][0]["content"][0]["text"] == training.preferences[0].chosen
    assert row["rejected"][0]["content"][0]["text"] == training.preferences[0].rejected
    assert row["video"] == f"videos/{training.preferences[0].video_id}.mp4"
    with pytest.raises(ValueError):
        MCQBenchmark([], "reversed")


def test_report_flags_malformed_benchmark_items(generated):
    from dataclasses import replace

    _, split, training, benchmark = generated
    broken = [replace(benchmark.items[0], options=benchmark.items[0].options[:3])] + benchmark.items[1:]
    report = build_report(training, BenchmarkText(broken, []), split)
    assert any("distinct options" in v for v in report.violations)

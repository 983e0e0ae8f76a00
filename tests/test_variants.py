"""The variants table (every arm vs SFT, paired, clustered by video), its MLflow metric
names, the Combined set's provenance and the arms' shared compute budget."""

import json

import pytest

from materializers.evaluation_materializers import VariantsReportMaterializer
from timewarp.data.corpus import PreparedVideo, SceneSpan, VideoCorpus
from timewarp.evaluation.report import ItemResult
from timewarp.evaluation.results import ModelEvaluation
from timewarp.evaluation.variants import ARMS, VariantsReport, compare_variants
from timewarp.generation.combine import combine_preferences
from timewarp.generation.datasets import PreferenceDataset
from timewarp.generation.records import PreferencePair
from timewarp.training.config import DPORecipe, budget_matched_recipe, continued_sft_recipe, SFTRecipe, examples_seen

VIDEOS = 40


def evaluation(right_videos: set[int], benchmark: str = "bench-a", scorer: str = "text_loglik") -> ModelEvaluation:
    items = [ItemResult(f"v{v}-q{q}", "end", variant, v in right_videos, 0, 0, f"v{v}")
             for v in range(VIDEOS) for q in range(2) for variant in ("normal", "shuffled")]
    return ModelEvaluation("DPO", f"/models/{len(right_videos)}", benchmark, {scorer: items})


def five_arms(benchmark_of_last: str = "bench-a") -> dict[str, ModelEvaluation]:
    right = {"SFT": 10, "Base-DPO": 10, "Combined": 25, "TimeWarp-Implicit": 12, "TimeWarp-Explicit": 30}
    return {arm: evaluation(set(range(n)), benchmark_of_last if arm == "TimeWarp-Explicit" else "bench-a")
            for arm, n in right.items()}


def test_every_arm_gets_a_row_with_intervals_and_its_difference_from_sft():
    report = compare_variants(five_arms(), {arm: {"timewarp-explicit": 8} for arm in ARMS[1:]})
    assert report.arms == list(ARMS) and report.baseline == "SFT"
    assert report.columns == [("text_loglik", m) for m in ("accuracy_normal", "accuracy_shuffled", "consistency")]
    sft = report.cell("SFT", "text_loglik", "accuracy_normal")
    assert sft.estimate.value == pytest.approx(10 / VIDEOS) and sft.difference is None
    explicit = report.cell("TimeWarp-Explicit", "text_loglik", "accuracy_normal")
    assert explicit.difference.value == pytest.approx(20 / VIDEOS)
    assert 0 < explicit.difference.low < explicit.difference.value < explicit.difference.high
    same = report.cell("Base-DPO", "text_loglik", "consistency").difference
    assert same.value == same.low == same.high == 0.0

    lines = report.table_lines()
    assert [line.split()[0] for line in lines[1:6]] == list(ARMS)
    assert "+50.0% [" in lines[5] and "bench-a" in lines[-1]


def test_mlflow_metrics_are_named_by_arm_and_intervals_live_apart():
    metrics = compare_variants(five_arms(), {}).metrics()
    eval_keys = [key for key in metrics if key.startswith("eval/")]
    assert {key.split("/")[-1] for key in eval_keys} == set(ARMS)
    assert metrics["eval/text_loglik/accuracy_normal/TimeWarp-Explicit"] == pytest.approx(30 / VIDEOS)
    assert metrics["eval_low/text_loglik/accuracy_normal/SFT"] < metrics["eval/text_loglik/accuracy_normal/SFT"]
    assert metrics["vs_SFT/text_loglik/accuracy_normal/Combined"] == pytest.approx(15 / VIDEOS)
    assert "vs_SFT/text_loglik/accuracy_normal/SFT" not in metrics


def test_arms_scored_on_another_benchmark_or_with_other_scorers_are_refused():
    with pytest.raises(ValueError, match="different benchmarks"):
        compare_variants(five_arms(benchmark_of_last="bench-b"), {})
    arms = five_arms()
    arms["Combined"] = evaluation(set(range(5)), scorer="loglik")
    with pytest.raises(ValueError, match="same scorers"):
        compare_variants(arms, {})


def test_report_round_trips_through_its_materializer(tmp_path):
    report = compare_variants(five_arms(), {"Combined": {"timewarp-explicit": 8, "llava-hound": 4}})
    materializer = VariantsReportMaterializer(str(tmp_path))
    materializer.save(report)
    assert materializer.load(VariantsReport).to_dict() == report.to_dict()
    html_file = next(iter(materializer.save_visualizations(report)))
    html_text = open(html_file).read()
    assert all(arm in html_text for arm in ARMS) and "data:image/png;base64," in html_text
    assert json.loads((tmp_path / "report.json").read_text())["training_pairs"]["Combined"]["llava-hound"] == 4


# ---- the Combined set ---------------------------------------------------------------------


def _corpus(root, ids: list[str], shard: str) -> VideoCorpus:
    videos = [PreparedVideo(video_id=i, shard=shard, row=n, annotation_filename=i, duration=2.0, fps=1.0, width=8,
                            height=8, scenes=[SceneSpan(0, 0.0, 2.0, "Red scene.")], permutation=[0],
                            frame_scene=[0], frame_times=[0.5]) for n, i in enumerate(ids)]
    corpus = VideoCorpus(root=root, videos=videos, rows_read=len(videos))
    for video in videos:
        for relative in video.media_files:
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(f"{shard}:{relative}".encode())
    return corpus


def _pairs(ids: list[str], source: str, prefix: str) -> PreferenceDataset:
    return PreferenceDataset([PreferencePair(f"{prefix}{n}", video, "q?", "yes", "no", "t", [], source, source)
                              for n, video in enumerate(ids)])


def test_combined_keeps_each_pairs_source_and_rejects_pairs_on_a_colliding_video(tmp_path):
    explicit = _corpus(tmp_path / "explicit", ["a", "b"], "finevideo/shard-0.parquet")
    hound = _corpus(tmp_path / "hound", ["h1", "b", "h2"], "sft_dpo_17k.jsonl")
    pairs, corpus, log = combine_preferences(
        [(_pairs(["a", "b"], "timewarp-explicit", "x"), explicit),
         (_pairs(["h1", "b", "h2", "ghost"], "llava-hound", "h"), hound)],
        tmp_path / "combined")
    assert [(p.id, p.source) for p in pairs.pairs] == [
        ("x0", "timewarp-explicit"), ("x1", "timewarp-explicit"), ("h0", "llava-hound"), ("h2", "llava-hound")]
    assert len(pairs.pairs) + len(log.rejections) == 6
    reasons = sorted(r.reason for r in log.rejections)
    assert "names a different video in an earlier set" in reasons[0] and "not in its own set's corpus" in reasons[1]
    assert sorted(v.video_id for v in corpus.videos) == ["a", "b", "h1", "h2"]
    # The kept "b" is the explicit set's own video, and every frame was copied.
    assert (corpus.root / "frames/b/00.png").read_bytes() == b"finevideo/shard-0.parquet:frames/b/00.png"
    assert pairs.media_root == str(corpus.root) and pairs.generator["sources"] == {
        "timewarp-explicit": 2, "llava-hound": 2}


# ---- one compute budget -----------------------------------------------------------------


def test_every_arm_trains_for_the_reference_arms_number_of_examples():
    dpo = DPORecipe.cpu_test(num_train_epochs=2, per_device_train_batch_size=4, gradient_accumulation_steps=2)
    matched = budget_matched_recipe(dpo, reference_pairs=100, processes=1)
    assert matched.max_steps == 25  # 2 epochs x 100 pairs / 8 per step
    assert examples_seen(matched, dataset_size=7) == examples_seen(matched, dataset_size=1000) == 200
    control = continued_sft_recipe(SFTRecipe.cpu_test(), dpo, 100)
    assert control.max_steps == matched.max_steps

"""The promotion gate: paired, clustered by video, with a margin; refusals; and the
registration against a real MLflow tracking store (SQLite)."""

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from timewarp.evaluation.report import ItemResult, accuracy, paired_difference
from timewarp.evaluation.results import ModelEvaluation
from timewarp.tracking.promotion import GatePolicy, PromotionDecision, decide
from timewarp.tracking.registry import CHALLENGER, CHAMPION, decision_tags, register_and_gate

VIDEOS = 60
QUESTIONS = 3  # per video and variant


def evaluation(right_videos: set[int], benchmark: str = "bench-a", scorer: str = "text_loglik",
               kind: str = "DPO") -> ModelEvaluation:
    """A model right on every item of the videos in ``right_videos`` and wrong elsewhere."""
    items = [
        ItemResult(f"v{v}-q{q}", "end", variant, v in right_videos, 0, 0, f"v{v}")
        for v in range(VIDEOS) for q in range(QUESTIONS) for variant in ("normal", "shuffled")
    ]
    return ModelEvaluation(kind, f"models:/m/{kind}", benchmark, {scorer: items})


def test_clustered_interval_is_wider_than_an_item_bootstrap_when_a_video_decides():
    # Items of a video succeed or fail together: the effective sample is the videos.
    items = evaluation(set(range(0, VIDEOS, 2))).results["text_loglik"]
    clustered = accuracy(items)
    as_items = accuracy([ItemResult(f"{r.item_id}-{r.variant}", "end", r.variant, r.correct, 0, 0) for r in items])
    assert clustered.value == as_items.value == 0.5
    assert (clustered.high - clustered.low) > 1.8 * (as_items.high - as_items.low)


def test_paired_difference_resamples_videos_and_refuses_unpaired_items():
    base = evaluation(set(range(20))).results["text_loglik"]
    other = evaluation(set(range(30))).results["text_loglik"]
    difference = paired_difference(base, other)
    assert difference.value == pytest.approx(10 / VIDEOS, abs=1e-6)
    assert 0 < difference.low < difference.value < difference.high
    with pytest.raises(ValueError, match="same \\(item, variant\\) pairs"):
        paired_difference(base, other[:-1])


def test_gate_promotes_a_clearly_better_candidate_and_keeps_a_tie_or_noise_out():
    policy = GatePolicy()
    champion = evaluation(set(range(20)), kind="champion")
    better = decide(evaluation(set(range(40))), champion, policy)
    assert better.promote and better.reason.startswith("beats the champion")
    assert better.comparison is not None and better.comparison.base_kind == "champion"
    tie = decide(evaluation(set(range(20))), champion, policy)
    assert not tie.promote and "does not clear the margin" in tie.reason
    # One more video right: higher point estimate, but within noise.
    noise = decide(evaluation(set(range(21))), champion, policy)
    assert not noise.promote and "accuracy_normal" in noise.reason
    worse = decide(evaluation(set(range(5))), champion, policy)
    assert not worse.promote
    # A negative margin promotes a candidate that is not worse by more than it.
    assert decide(evaluation(set(range(20))), champion, GatePolicy(margin=-0.2)).promote
    assert decide(evaluation(set(range(20))), None, policy) == PromotionDecision(True, "no champion yet")


def test_gate_refuses_other_benchmarks_and_other_scorers():
    policy = GatePolicy(scorer="text_loglik")
    candidate = evaluation(set(range(40)))
    older = decide(candidate, evaluation(set(), benchmark="bench-old", kind="champion"), policy)
    assert not older.promote and "not comparable" in older.reason and "bench-old" in older.reason
    other_scorer = decide(candidate, evaluation(set(), scorer="generation", kind="champion"), policy)
    assert not other_scorer.promote and "not comparable" in other_scorer.reason and "generation" in other_scorer.reason
    assert not decide(evaluation(set(range(40)), scorer="loglik"), None, policy).promote
    with pytest.raises(ValueError, match="gate metrics"):
        GatePolicy(metrics=("accuracy",))
    with pytest.raises(ValueError, match="margin"):
        GatePolicy(margin=5)


@pytest.fixture()
def tracking(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("gate", artifact_location=str(tmp_path / "artifacts"))
    yield experiment
    mlflow.set_tracking_uri(None)


def _register(experiment, decision: PromotionDecision, scored_champion: str | None, policy=GatePolicy()):
    with mlflow.start_run(experiment_id=experiment):
        mlflow.log_text("weights", "model/weights.txt")
        uri = mlflow.get_artifact_uri("model")  # any model source; the gate only moves aliases
        return register_and_gate(uri, "timewarp-test", decision, decision_tags(decision, policy, "bench-a"),
                                  scored_champion)


def test_registry_tags_say_why_and_a_moved_champion_voids_the_decision(tracking):
    policy = GatePolicy()
    first = _register(tracking, decide(evaluation(set(range(20))), None, policy), None)
    assert (first.alias, first.version) == (CHAMPION, "1")
    champion = evaluation(set(range(20)), kind="champion")
    better = _register(tracking, decide(evaluation(set(range(40))), champion, policy), "1")
    assert better.alias == CHAMPION
    worse = _register(tracking, decide(evaluation(set(range(10))), evaluation(set(range(40)), kind="champion"), policy), "2")
    assert worse.alias == CHALLENGER

    client = MlflowClient()
    assert str(client.get_model_version_by_alias("timewarp-test", CHAMPION).version) == better.version
    tags = client.get_model_version("timewarp-test", worse.version).tags
    assert tags["promotion"] == CHALLENGER and tags["promotion_reason"] == worse.decision.reason
    assert tags["gate_scorer"] == "text_loglik" and tags["benchmark_version"] == "bench-a"
    assert float(tags["candidate.accuracy_normal"]) == pytest.approx(10 / VIDEOS, abs=1e-6)
    assert float(tags["champion.accuracy_normal"]) == pytest.approx(40 / VIDEOS, abs=1e-6)
    assert tags["compared_with"] == "version 2"
    assert client.get_model_version("timewarp-test", "1").tags["replaced_by"] == "version 2"

    # Compared against version 2, but another run moved the alias to version 4 meanwhile.
    raced = _register(tracking, decide(evaluation(set(range(60))), champion, policy), "2")
    assert raced.alias == CHAMPION
    late = _register(tracking, decide(evaluation(set(range(60))), champion, policy), "2")
    assert late.alias == CHALLENGER and "champion changed to version 4" in late.decision.reason
    assert client.get_model_version("timewarp-test", late.version).tags["promotion"] == CHALLENGER
    assert np.isfinite(float(tags["candidate.accuracy_shuffled"]))

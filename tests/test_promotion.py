"""The promotion gate, alone and against a real MLflow tracking store (SQLite)."""

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from timewarp.tracking.promotion import GATED_METRICS, Scores, decide
from timewarp.tracking.registry import CHALLENGER, CHAMPION, log_model_folder, register_and_gate


def scores(normal, shuffled, version="bench-1"):
    return Scores(version, {"accuracy_normal": normal, "accuracy_shuffled": shuffled})


def test_gate_rules():
    assert decide(scores(0.5, 0.5), None).promote
    assert decide(scores(0.6, 0.55), scores(0.5, 0.5)).promote
    worse = decide(scores(0.6, 0.45), scores(0.5, 0.5))
    assert not worse.promote and "accuracy_shuffled" in worse.reason
    assert not decide(scores(0.5, 0.5), scores(0.5, 0.5)).promote  # a tie is no gain
    other = decide(scores(0.9, 0.9, "bench-2"), scores(0.5, 0.5))
    assert not other.promote and "not comparable" in other.reason
    assert not decide(Scores("bench-1", {"accuracy_normal": 1.0}), None).promote


@pytest.fixture()
def tracking(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("gate", artifact_location=str(tmp_path / "artifacts"))
    yield experiment
    mlflow.set_tracking_uri(None)


def _register(tmp_path, experiment, normal, shuffled, version="bench-1"):
    folder = tmp_path / f"model-{normal}-{shuffled}"
    folder.mkdir()
    (folder / "README.md").write_text("# model card")
    with mlflow.start_run(experiment_id=experiment):
        uri = log_model_folder(folder)
        return register_and_gate(uri, "timewarp-test", scores(normal, shuffled, version), GATED_METRICS)


def test_better_becomes_champion_worse_is_challenger(tmp_path, tracking):
    first = _register(tmp_path, tracking, 0.40, 0.30)
    assert (first.alias, first.version) == (CHAMPION, "1")
    better = _register(tmp_path, tracking, 0.55, 0.35)
    assert better.alias == CHAMPION
    worse = _register(tmp_path, tracking, 0.60, 0.20)
    assert worse.alias == CHALLENGER and "accuracy_shuffled" in worse.decision.reason

    client = MlflowClient()
    assert str(client.get_model_version_by_alias("timewarp-test", CHAMPION).version) == better.version
    challenger = client.get_model_version_by_alias("timewarp-test", CHALLENGER)
    assert str(challenger.version) == worse.version
    assert challenger.tags["promotion_reason"] == worse.decision.reason
    assert float(challenger.tags["accuracy_normal"]) == pytest.approx(0.60)
    # The registered model holds the folder.
    local = mlflow.artifacts.download_artifacts(f"models:/timewarp-test/{better.version}")
    assert any(p.name == "README.md" for p in __import__("pathlib").Path(local).rglob("README.md"))

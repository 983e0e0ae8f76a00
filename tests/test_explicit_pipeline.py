"""``timewarp_explicit`` end to end on the local stack with MLflow: logged params and
metrics, the registered model version and its alias, ZenML lineage back to the shards, a
second unchanged run served from the cache that re-scores the champion and stays
challenger, and a third run on a changed benchmark that re-scores the champion on the new
items and (with a non-inferiority margin) replaces it."""

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient


pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def stack(local_stack):
    from infra.local_stack import ensure_local_stack

    uri, folder = local_stack
    ensure_local_stack(uri, folder / "artifacts")  # idempotent
    return uri, folder


@pytest.fixture(scope="module")
def runs(stack, explicit_runs):
    return explicit_runs  # tests/conftest.py: shared with tests/test_browser_ui.py


def test_mlflow_has_params_metrics_and_the_registered_model(stack, runs):
    uri, folder = stack
    first = runs[0]
    client = MlflowClient(uri)
    registration = first.steps["register_model"].outputs["model_registration"][0].load()
    run = client.get_run(registration["mlflow_run_id"])
    params = run.data.params
    assert params["recipe.beta"] == "0.5" and params["recipe.loss_type"] == "sigmoid"
    assert params["family"] == "qwen2_vl" and "data.preference_pairs" in params
    metrics = run.data.metrics
    # The SFT stage trains to a validation plateau and records where it stopped, reproducibly.
    # (The default recipe's values, as logged.)
    assert params["sft_recipe.early_stopping_patience"] == "3" and params["sft_recipe.torch_threads"] == "2"
    assert params["sft_recipe.early_stopping_threshold"] == "0.001"
    assert metrics["sft/validation/early_stopping_threshold"] == 0.001
    assert 0 < metrics["sft/validation/best_epoch"] <= metrics["sft/validation/stopped_epoch"]
    assert metrics["sft/validation/videos"] >= 1 and metrics["sft/reproducibility/torch_threads"] == 2
    # The default: the tiny model is taught by SFT first; DPO and the control arm start from it.
    for arm in ("SFT", "DPO", "SFT-cont"):
        for suffix in ("", "_low", "_high"):
            assert f"eval/text_loglik/accuracy_shuffled/{arm}{suffix}" in metrics
    for name in ("difference", "control_difference"):
        low, value, high = (metrics[f"eval/text_loglik/accuracy_normal/{name}{s}"] for s in ("_low", "", "_high"))
        assert low <= value <= high
    assert metrics["eval/text_loglik/accuracy_normal/difference"] == pytest.approx(
        metrics["eval/text_loglik/accuracy_normal/DPO"] - metrics["eval/text_loglik/accuracy_normal/SFT"]
    )
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 3
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert artifacts == {"plots/evaluation.png", "plots/evaluation_control.png", "plots/training_curves.png"}
    version = client.get_model_version("timewarp-e2e", registration["version"])
    assert version.tags["benchmark_version"] and version.tags["zenml_run_id"] == str(first.id)
    assert registration["alias"] == "champion" and registration["reason"] == "no champion yet"
    assert version.tags["promotion"] == "champion" and version.tags["compared_with"] == "none"
    assert str(Path(run.info.artifact_uri.replace("file://", ""))).startswith(str(folder))


def _registration(run) -> dict:
    return run.steps["register_model"].outputs["model_registration"][0].load()


def test_second_unchanged_run_is_cached_and_does_not_beat_the_champion(stack, runs):
    from zenml.enums import ExecutionStatus

    uri, _ = stack
    first, second, _ = runs
    for name in ("prepare_videos", "generate_training_text", "train_sft", "train_dpo", "continue_sft",
                 "evaluate_base", "evaluate_trained", "evaluate_control"):
        assert second.steps[name].status == ExecutionStatus.CACHED, name
    # The champion (the first run's model, loaded from the registry) was re-scored on this
    # run's items: the same model, so the same answers, and a tie does not clear the margin.
    assert second.steps["evaluate_champion"].status == ExecutionStatus.COMPLETED
    rescored = second.steps["evaluate_champion"].outputs["champion_evaluation"][0].load()
    trained = second.steps["evaluate_trained"].outputs["evaluation"][0].load()
    assert rescored.model_path == f"models:/timewarp-e2e/{_registration(first)['version']}"
    assert rescored.benchmark_version == trained.benchmark_version
    assert [r.correct for r in rescored.results["text_loglik"]] == [r.correct for r in trained.results["text_loglik"]]
    registration = _registration(second)
    assert registration["alias"] == "challenger" and "does not clear the margin" in registration["reason"]
    client = MlflowClient(uri)
    tags = client.get_model_version("timewarp-e2e", registration["version"]).tags
    assert tags["promotion"] == "challenger" and tags["promotion_reason"] == registration["reason"]
    assert tags["gate_scorer"] == "text_loglik" and tags["benchmark_version"] == trained.benchmark_version
    assert tags["candidate.accuracy_normal"] == tags["champion.accuracy_normal"]
    assert tags["compared_with"] == f"version {_registration(first)['version']}"


def test_a_champion_from_an_older_benchmark_is_rescored_on_the_new_one(stack, runs):
    from zenml.client import Client
    from zenml.enums import ModelStages

    uri, _ = stack
    first, second, third = runs
    old = first.steps["evaluate_trained"].outputs["evaluation"][0].load()
    new = third.steps["evaluate_trained"].outputs["evaluation"][0].load()
    assert old.benchmark_version != new.benchmark_version  # fewer questions per video
    rescored = third.steps["evaluate_champion"].outputs["champion_evaluation"][0].load()
    assert rescored.benchmark_version == new.benchmark_version
    assert len(rescored.results["text_loglik"]) == len(new.results["text_loglik"]) < len(old.results["text_loglik"])
    registration = _registration(third)
    assert registration["alias"] == "champion" and registration["reason"].startswith("beats the champion")
    client = MlflowClient(uri)
    assert str(client.get_model_version_by_alias("timewarp-e2e", "champion").version) == registration["version"]
    assert client.get_model_version("timewarp-e2e", _registration(first)["version"]).tags["replaced_by"] == (
        f"version {registration['version']}")
    # Mirrored on the ZenML Model: the champion's run is in production, the challenger in
    # staging, the replaced champion archived.
    stages = {run.id: Client().get_pipeline_run(run.id).model_version.stage for run in runs}
    assert stages == {first.id: ModelStages.ARCHIVED, second.id: ModelStages.STAGING,
                      third.id: ModelStages.PRODUCTION}
    tagged = {t.name for t in Client().get_pipeline_run(third.id).model_version.tags}
    assert {"champion", f"mlflow:timewarp-e2e/{registration['version']}"} <= tagged


def test_lineage_from_the_registered_model_back_to_the_source_shards(stack, runs):
    from zenml.client import Client

    uri, _ = stack
    client = Client()
    version = MlflowClient(uri).get_model_version_by_alias("timewarp-e2e", "champion")
    run = client.get_pipeline_run(version.tags["zenml_run_id"])
    trained = run.steps["train_dpo"]
    preferences = trained.inputs["preference_pairs"][0]
    generate = client.get_run_step(preferences.producer_step_run_id)
    corpus = generate.inputs["corpus"][0]
    merge = client.get_run_step(corpus.producer_step_run_id)
    prepare = client.get_run_step(merge.inputs["parts"][0].producer_step_run_id)
    shards = prepare.inputs["shards"][0].load()
    pair = preferences.load().pairs[0]
    video = next(v for v in corpus.load().videos if v.video_id == pair.video_id)
    assert video.shard in {s.uri for s in shards.shards} and video.row >= 0
    # The ZenML Model version of the run links the trained model and the evaluation.
    model_version = run.model_version
    assert model_version is not None and model_version.model.name == "timewarp-explicit"
    linked = {a.artifact.name for a in client.list_artifact_versions(model_version_id=model_version.id, size=200).items}
    assert {"dpo_model", "evaluation_report", "preference_pairs"} <= linked


def test_the_public_benchmark_switch_scores_the_trained_model_and_the_champion(stack, runs):
    """``public_benchmarks`` in a timewarp_explicit run: after registration, the trained model
    and ``models:/NAME@champion`` on TVBench through lmms-eval, each in its own MLflow run of
    the experiment ``timewarp_evaluate`` tagged with its role."""
    uri, _ = stack
    third = runs[2]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("timewarp_evaluate")
    logged = {}
    for role in ("candidate", "champion"):
        scores = third.steps[f"score_public_benchmarks_{role}"].outputs
        results = next(iter(scores.values()))[0].load()
        assert all(count == 1 for count in results.item_counts.values()) and len(results.item_counts) == 10
        summary = next(iter(third.steps[f"log_public_benchmarks_{role}"].outputs.values()))[0].load()
        mlflow_run = client.get_run(summary["mlflow_run_id"])
        assert mlflow_run.info.experiment_id == experiment.experiment_id
        assert mlflow_run.data.tags["role"] == role
        assert 0.0 <= mlflow_run.data.metrics["bench/tvbench/tvbench_acc"] <= 1.0
        logged[role] = summary["mlflow_run_id"]
    assert logged["candidate"] != logged["champion"]

"""``timewarp_variants`` end to end on the local stack with MLflow: the paper's five rows
from one starting model and one compute budget, the table in MLflow, the dashboard and the
closing lines; then one arm as its own pipeline (``timewarp_combined``) registering under
its own model name."""

import subprocess

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.test_cli_exit import REPO_ROOT, ZENML, _cli_env
from timewarp.evaluation.variants import ARMS

pytestmark = pytest.mark.pipeline

PARAMETERS = {
    "sample_videos": 10, "recipe_overrides": {"max_steps": 3, "save_steps": 10, "logging_steps": 1},
    "hound_max_pairs": 6,
}


@pytest.fixture(scope="module")
def stack(local_stack):
    from infra.local_stack import ensure_local_stack

    uri, folder = local_stack
    ensure_local_stack(uri, folder / "artifacts")  # idempotent
    return uri, folder


@pytest.fixture(scope="module")
def variants_run(stack, tmp_path_factory):
    """The documented command in its own process (pytest's capture would keep the steps'
    prints from ZenML's stored logs, where the closing lines are read back from)."""
    from zenml.client import Client

    tmp = tmp_path_factory.mktemp("variants")
    config = tmp / "variants.yaml"
    values = {**PARAMETERS, "checkpoint_root": str(tmp / "checkpoints"), "implicit_max_new_tokens": 12}
    config.write_text(yaml.safe_dump({"parameters": values}))
    result = subprocess.run([ZENML, "pipeline", "run", "timewarp_variants", "-c", str(config)], cwd=REPO_ROOT,
                            env=_cli_env(), capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return _latest(Client().get_pipeline("timewarp_variants")), tmp, result.stdout + result.stderr


def _latest(pipeline):
    return max(pipeline.runs, key=lambda r: r.created)


def _output(run, step: str, name: str):
    return run.steps[step].outputs[name][0].load()


def test_all_five_rows_from_one_start_and_one_budget(variants_run):
    run, _, _ = variants_run
    report = _output(run, "compare_variants", "variants_report")
    assert report.arms == list(ARMS) and report.baseline == "SFT"
    for arm in ARMS:
        cell = report.cell(arm, "text_loglik", "accuracy_normal")
        assert cell.estimate.low <= cell.estimate.value <= cell.estimate.high
        assert (cell.difference is None) == (arm == "SFT")
    # Every DPO arm starts from the SFT model and takes the same number of optimizer steps.
    sft_model = run.steps["train_sft"].outputs["sft_model"][0]
    steps = set()
    for suffix in ("base_dpo", "combined", "implicit", "explicit"):
        step = run.steps[f"train_dpo_{suffix}"]
        assert step.inputs["base_model"][0].id == sft_model.id
        steps.add(max(int(row.get("step", 0)) for row in step.outputs["dpo_model"][0].load().history))
    assert steps == {3}
    # What each arm trained on, with its provenance.
    combined = _output(run, "combine_pairs", "combined_pairs")
    assert {p.source for p in combined.pairs} == {"timewarp-explicit", "llava-hound"}
    assert report.training_pairs["Combined"] == {
        "timewarp-explicit": sum(p.source == "timewarp-explicit" for p in combined.pairs),
        "llava-hound": sum(p.source == "llava-hound" for p in combined.pairs)}
    assert report.training_pairs["Base-DPO"] == {"llava-hound": 6}
    implicit = _output(run, "generate_implicit_pairs", "implicit_pairs")
    assert all(p.source == "timewarp-implicit" and p.corruption and p.chosen != p.rejected for p in implicit.pairs)


def test_the_table_reaches_mlflow_and_the_terminal(stack, variants_run):
    from pipelines.reporting import closing_lines

    uri, _ = stack
    run, _, output = variants_run
    logged = _output(run, "log_variants", "variants_run")
    client = MlflowClient(uri)
    mlflow_run = client.get_run(logged["mlflow_run_id"])
    assert client.get_experiment(mlflow_run.info.experiment_id).name == "timewarp_variants"
    metrics = mlflow_run.data.metrics
    for arm in ARMS:
        for metric in ("accuracy_normal", "accuracy_shuffled", "consistency"):
            assert f"eval/text_loglik/{metric}/{arm}" in metrics
    assert {a.path for a in client.list_artifacts(mlflow_run.info.run_id, "plots")} == {"plots/variants.png"}
    lines = closing_lines(run)
    assert [line.split()[0] for line in lines[1:6]] == list(ARMS)
    assert lines[-1].startswith("Variants table of ZenML run")
    assert all(line in output for line in lines[:6])  # printed at the end of the command
    # ... and then where to look: this MLflow run and the run in the ZenML dashboard.
    pointers = output[output.rindex("Where to look:"):]
    assert f"MLflow run {logged['mlflow_run_id']}: " in pointers and str(run.id) in pointers


def test_one_arm_as_its_own_pipeline_registers_under_its_name(stack, variants_run):
    from zenml.client import Client

    from pipelines.timewarp_combined import timewarp_combined

    uri, _ = stack
    _, tmp, _ = variants_run
    config = tmp / "combined.yaml"
    config.write_text(yaml.safe_dump({"parameters": {**PARAMETERS, "checkpoint_root": str(tmp / "checkpoints")}}))
    timewarp_combined.with_options(config_path=str(config))()
    run = _latest(Client().get_pipeline("timewarp_combined"))
    registration = _output(run, "register_model", "model_registration")
    assert registration["registered_model"] == "timewarp-combined" and registration["alias"] == "champion"
    trained = run.steps["train_dpo"].outputs["dpo_model"][0].load()
    assert trained.kind == "DPO"
    assert MlflowClient(uri).get_model_version("timewarp-combined", registration["version"]).tags["promotion"] == "champion"


def test_public_benchmarks_score_the_registry_champion_from_a_local_tvbench_folder(stack, variants_run):
    """`zenml pipeline run timewarp_evaluate -c ...` on the champion the test above
    registered and a TVBench-layout folder (every config, so lmms-eval's `tvbench` group
    runs): `bench/tvbench/...` in MLflow, per-item predictions, the table printed."""
    from zenml.client import Client

    from timewarp.evaluation.lmms.miniatures import TVBENCH_TASKS, write_tvbench_miniature

    uri, _ = stack
    _, tmp, _ = variants_run
    root = tmp / "tvbench"
    write_tvbench_miniature(root, items_per_task=1, tasks=tuple(TVBENCH_TASKS))
    config = tmp / "evaluate.yaml"
    config.write_text(yaml.safe_dump({"parameters": {
        "model": "models:/timewarp-combined@champion", "benchmarks": ["tvbench"],
        "benchmark_roots": {"tvbench": str(root)}, "limit": 1, "frames_per_video": 8}}))
    result = subprocess.run([ZENML, "pipeline", "run", "timewarp_evaluate", "-c", str(config)], cwd=REPO_ROOT,
                            env={**_cli_env(), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = _latest(Client().get_pipeline("timewarp_evaluate"))
    scores = _output(run, "score_public_benchmarks", "public_benchmark_results")
    assert set(scores.item_counts) == {f"tvbench_{task}" for task in TVBENCH_TASKS}
    assert all(count == 1 for count in scores.item_counts.values())
    logged = _output(run, "log_public_benchmarks", "benchmark_run")
    client = MlflowClient(uri)
    mlflow_run = client.get_run(logged["mlflow_run_id"])
    assert client.get_experiment(mlflow_run.info.experiment_id).name == "timewarp_evaluate"
    metrics = mlflow_run.data.metrics
    assert 0.0 <= metrics["bench/tvbench/tvbench_acc"] <= 1.0
    assert metrics["bench/tvbench_scene_transition/tvbench_acc"] in (0.0, 1.0)
    predictions = {a.path for a in client.list_artifacts(mlflow_run.info.run_id, "predictions")}
    assert "predictions/tvbench_scene_transition.jsonl" in predictions
    assert "Benchmarks of models:/timewarp-combined@champion" in result.stdout + result.stderr
    assert f"MLflow run {logged['mlflow_run_id']}: " in result.stdout + result.stderr

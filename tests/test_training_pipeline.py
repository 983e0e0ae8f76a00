"""``timewarp_explicit`` trains a tiny model of every family on the sample's preference
pairs through the local ZenML stack (isolated config, see conftest)."""

import json
from pathlib import Path

import pytest
import yaml


pytestmark = pytest.mark.pipeline

FAMILIES = ["qwen2_vl", "llava_onevision", "video_llava", "internvl", "video_llama_3"]


@pytest.fixture(scope="module")
def client(local_stack):
    from zenml.client import Client

    return Client()


def _run(tmp_path: Path, **parameters):
    from pipelines.timewarp_explicit import timewarp_explicit

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"parameters": {
        "sample_videos": 8, "checkpoint_root": str(tmp_path / "checkpoints"), "mcq_per_video": 1,
        "scorers": ["loglik"], "gate_scorer": "loglik", "registered_model_name": "timewarp-families",
        "recipe_overrides": {"max_steps": 2, "save_steps": 1}, **parameters,
    }}))
    timewarp_explicit.with_options(config_path=str(config))()


@pytest.mark.parametrize("family", FAMILIES)
def test_train_dpo_each_family_on_the_local_stack(client, tmp_path, family):
    from timewarp.models.checkpoint import ModelCheckpoint

    _run(tmp_path, model_family=family, sft_stage=False)
    run = client.get_pipeline("timewarp_explicit").last_run
    assert "train_sft" not in run.steps
    artifact = run.steps["train_dpo"].outputs["dpo_model"][0]
    trained = artifact.load()
    assert isinstance(trained, ModelCheckpoint)
    assert (trained.family, trained.kind, trained.adapter) == (family, "DPO", False)
    assert trained.history and all(abs(row["loss"]) < 1e6 for row in trained.history if "loss" in row)
    folder = Path(trained.path)
    assert (folder / "README.md").exists() and (folder / "training_log.json").exists()
    card = (folder / "README.md").read_text()
    assert "preference_pairs" in card and "base_model" in card
    assert artifact.run_metadata["family"] == family
    base = run.steps["prepare_base_model"].outputs["base_model"][0].load()
    assert trained.base_model == base.path and base.kind == "base"


def test_sft_stage_then_dpo_and_resume_after_a_retry(client, tmp_path):
    _run(tmp_path)  # sft_stage unset: on, as the tiny model has not learnt the task
    run = client.get_pipeline("timewarp_explicit").last_run
    sft = run.steps["train_sft"].outputs["sft_model"][0].load()
    dpo = run.steps["train_dpo"].outputs["dpo_model"][0].load()
    assert sft.kind == "SFT" and dpo.base_model == sft.path
    assert json.loads((Path(dpo.path) / "training_log.json").read_text())
    assert dpo.resumed_from is None
    # Run train_dpo again on the same inputs, as a retried or restarted step would: it
    # resumes from the newest checkpoint its earlier attempt left under checkpoint_root.
    from pipelines.timewarp_explicit import timewarp_explicit

    config = yaml.safe_load((tmp_path / "run.yaml").read_text())
    config["steps"] = {"train_dpo": {"enable_cache": False}}
    (tmp_path / "retry.yaml").write_text(yaml.safe_dump(config))
    timewarp_explicit.with_options(config_path=str(tmp_path / "retry.yaml"))()
    again = client.get_pipeline("timewarp_explicit").last_run.steps["train_dpo"].outputs["dpo_model"][0].load()
    assert again.resumed_from and Path(again.resumed_from).name == "checkpoint-2"


def test_recipe_change_busts_the_cache(client, tmp_path):
    from zenml.enums import ExecutionStatus

    _run(tmp_path)
    _run(tmp_path)
    assert client.get_pipeline("timewarp_explicit").last_run.steps["train_dpo"].status == ExecutionStatus.CACHED
    _run(tmp_path, recipe_overrides={"max_steps": 2, "save_steps": 1, "beta": 0.2})
    assert client.get_pipeline("timewarp_explicit").last_run.steps["train_dpo"].status == ExecutionStatus.COMPLETED


def test_a_given_base_model_skips_the_sft_stage_unless_asked(client, tmp_path):
    from timewarp.models.qwen2_vl import family

    folder = family.make_tiny(tmp_path / "instruct", seed=1)  # stands in for an instruction-tuned model
    _run(tmp_path, base_model=str(folder))
    run = client.get_pipeline("timewarp_explicit").last_run
    assert "train_sft" not in run.steps
    assert run.steps["train_dpo"].outputs["dpo_model"][0].load().base_model == str(folder)
    with pytest.raises(ValueError, match="needs sft_stage"):
        _run(tmp_path, base_model=str(folder), control="sft_continue")

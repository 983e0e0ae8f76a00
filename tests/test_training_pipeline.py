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
    base = run.steps["prepare_base_model"].outputs["base_model"][0]
    assert base.load().kind == "base"
    # Recorded by artifact (portable), not by the folder it was loaded from in this process.
    assert trained.base_model == f"zenml:{base.id}" and trained.parent_artifact == str(base.id)


def test_sft_stage_then_dpo_and_resume_after_a_retry(client, tmp_path):
    _run(tmp_path)  # sft_stage unset: on, as the tiny model has not learnt the task
    run = client.get_pipeline("timewarp_explicit").last_run
    sft_artifact = run.steps["train_sft"].outputs["sft_model"][0]
    sft = sft_artifact.load()
    dpo = run.steps["train_dpo"].outputs["dpo_model"][0].load()
    assert sft.kind == "SFT" and dpo.parent_artifact == str(sft_artifact.id)
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


def test_lora_sft_then_lora_dpo_loads_from_the_artifacts_alone(client, tmp_path):
    """LoRA DPO on top of a LoRA SFT adapter: training starts from the merged SFT model, the
    DPO artifact names the SFT artifact (not a local folder) and loads from the artifact
    store alone, as another pod would: with the checkpoint folders gone."""
    import shutil

    import torch

    lora = {"max_steps": 2, "save_steps": 1, "lora": {"r": 8, "alpha": 16}}
    _run(tmp_path, recipe_overrides=lora)
    run = client.get_pipeline("timewarp_explicit").last_run
    sft_artifact = run.steps["train_sft"].outputs["sft_model"][0]
    dpo_artifact = run.steps["train_dpo"].outputs["dpo_model"][0]
    sft, dpo = sft_artifact.load(), dpo_artifact.load()
    assert sft.adapter and dpo.adapter
    assert dpo.parent_artifact == str(sft_artifact.id) and dpo.base_model == f"zenml:{sft_artifact.id}"
    card = json.loads((Path(dpo.path) / "checkpoint.json").read_text())
    # Only where it was trained (path, resumed_from) is a local folder; nothing it needs to load.
    assert not [k for k, v in card.items() if k not in ("path", "resumed_from") and str(tmp_path) in str(v)]

    # The model DPO trained from is the SFT model with its adapter merged.
    merged = tmp_path / "checkpoints" / f"merged-{sft_artifact.id}"
    from timewarp.models.registry import family_by_name

    trained_from, _ = family_by_name("qwen2_vl").load(str(merged))
    sft_merged, _, _ = sft.load_merged()
    for (name, a), b in zip(trained_from.state_dict().items(), sft_merged.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name

    shutil.rmtree(tmp_path / "checkpoints")
    model, processor, family = dpo_artifact.load().load()
    from peft import PeftModel

    assert isinstance(model, PeftModel)
    # The DPO adapter changed the merged SFT model's weights.
    lora_weights = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_weights and any(p.abs().sum() > 0 for p in lora_weights)
    assert run.steps["evaluate_trained"].outputs["evaluation"][0].load().results

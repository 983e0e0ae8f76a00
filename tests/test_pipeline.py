"""``timewarp_data`` on the local ZenML stack (isolated config, see conftest)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from zenml import pipeline, step
from zenml.client import Client

from conftest import REPO_ROOT
from steps.generation import check_data_quality, generate_benchmark, generate_training_text
from timewarp.data.corpus import VideoCorpus
from timewarp.generation.config import GeneratorConfig
from timewarp.generation.splits import VideoSplit

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def zenml_client():
    from zenml.client import Client

    if not (REPO_ROOT / ".zen").exists():
        Client.initialize(root=REPO_ROOT)
    return Client()


def _last_run(client):
    return client.get_pipeline("timewarp_data").last_run


@pytest.fixture(scope="module")
def exported_run(zenml_client, sample_root, tmp_path_factory):
    from pipelines.timewarp_data import timewarp_data

    export = tmp_path_factory.mktemp("export")
    timewarp_data.with_options(enable_cache=False)(
        finevideo_root=str(sample_root), export_dir=str(export), max_videos=10, render_shuffled_videos=True
    )
    return _last_run(zenml_client), export


def test_export_has_the_paper_layout(exported_run):
    run, export = exported_run
    ids = sorted(p.stem for p in (export / "normal_annotations").glob("*.json"))
    assert len(ids) == 10
    assert sorted(p.stem for p in (export / "shuffled_annotations").glob("*.json")) == ids
    assert sorted(p.stem for p in (export / "normal_videos").glob("*.mp4")) == ids
    assert sorted(p.stem for p in (export / "shuffled_videos").glob("*.mp4")) == ids
    normal = json.loads((export / "normal_annotations" / f"{ids[0]}.json").read_text())
    shuffled = json.loads((export / "shuffled_annotations" / f"{ids[0]}.json").read_text())
    assert set(normal) == {"video", "annotation_filename", "description", "scene_timestamps", "combined_captions"}
    assert set(shuffled) >= set(normal) | {"shuffled_combined_captions"}
    permutation = shuffled["permutation"]
    assert shuffled["description"] == [normal["description"][i] for i in permutation]
    assert shuffled["scene_timestamps"] == [normal["scene_timestamps"][i] for i in permutation]
    assert shuffled["shuffled_combined_captions"] == " ".join(shuffled["description"])
    assert normal["combined_captions"] == " ".join(normal["description"])
    assert len(list((export / "frames" / ids[0] / "normal").glob("*.png"))) == 8
    assert len(list((export / "frames" / ids[0] / "shuffled").glob("*.png"))) == 8
    assert (export / "rejections.jsonl").read_text() == ""
    for name in ("temporal_sft.json", "temporal_pref.json", "timewarp_normal_benchmark.json",
                 "timewarp_shuffled_benchmark.json", "llava_hound_dpo.jsonl", "trl_preference"):
        assert (export / name).exists(), name


def test_generated_text_artifacts(exported_run):
    from timewarp.generation.datasets import MCQBenchmark, PreferenceDataset, SFTDataset

    run, _ = exported_run
    split = run.steps["split_videos"].outputs["video_split"][0].load()
    assert split.train_ids and split.benchmark_ids and not split.leaked_ids()
    training = run.steps["generate_training_text"].outputs
    preferences = training["preference_pairs"][0].load()
    sft = training["sft_pairs"][0].load()
    assert isinstance(preferences, PreferenceDataset) and isinstance(sft, SFTDataset)
    assert len(preferences.pairs) == 3 * len(split.train_ids)
    assert {p.video_id for p in preferences.pairs} <= set(split.train_ids)
    assert preferences.generator["generator"] == "template"
    benchmark = run.steps["generate_benchmark"].outputs
    normal, shuffled = benchmark["normal_benchmark"][0].load(), benchmark["shuffled_benchmark"][0].load()
    assert isinstance(normal, MCQBenchmark) and (normal.variant, shuffled.variant) == ("normal", "shuffled")
    assert {i.video_id for i in normal.items} <= set(split.benchmark_ids)
    report = run.steps["check_data_quality"].outputs["data_quality_report"][0]
    assert report.run_metadata["violations"] == 0
    assert report.load().counts["preference_pairs"] == len(preferences.pairs)
    html = (Path(training["preference_pairs"][0].uri) / "preferences.html").read_text()
    assert "<img" in html and preferences.pairs[0].question.split()[0] in html


def test_lineage_leads_from_the_export_back_to_shard_and_row(exported_run, zenml_client, sample_root):
    from timewarp.data.corpus import VideoCorpus
    from timewarp.data.ingest import ShardSet

    run, export = exported_run
    lineage = json.loads((export / "lineage.json").read_text())
    assert lineage["pipeline_run_id"] == str(run.id)
    corpus_version = zenml_client.get_artifact_version(lineage["corpus_artifact_version_id"])
    merge_step = zenml_client.get_run_step(corpus_version.producer_step_run_id)
    assert merge_step.name == "merge_corpus"
    part_version = merge_step.inputs["parts"][0]
    prepare_step = zenml_client.get_run_step(part_version.producer_step_run_id)
    assert prepare_step.name == "prepare_videos"
    shards_version = prepare_step.inputs["shards"][0]
    assert zenml_client.get_run_step(shards_version.producer_step_run_id).name == "locate_shards"
    shards = shards_version.load()
    assert isinstance(shards, ShardSet) and shards.root == str(sample_root)

    corpus = corpus_version.load()
    assert isinstance(corpus, VideoCorpus)
    video_id, source = next(iter(lineage["videos"].items()))
    video = next(v for v in corpus.videos if v.video_id == video_id)
    assert (video.shard, video.row) == (source["shard"], source["row"])
    assert video.shard in {s.uri for s in shards.shards}
    metadata = corpus_version.run_metadata
    assert metadata["videos"] == 10 and metadata["rows_read"] == 10
    assert corpus_version.visualizations, "the corpus has a dashboard view"


def test_second_run_is_served_from_the_cache(zenml_client, sample_root):
    from zenml.enums import ExecutionStatus

    from pipelines.timewarp_data import timewarp_data

    for _ in range(2):
        timewarp_data(finevideo_root=str(sample_root), max_videos=4, seed=1)
    run = _last_run(zenml_client)
    assert run.steps["locate_shards"].status == ExecutionStatus.COMPLETED
    assert run.steps["prepare_videos"].status == ExecutionStatus.CACHED
    assert run.steps["merge_corpus"].status == ExecutionStatus.CACHED
    timewarp_data(finevideo_root=str(sample_root), max_videos=4, seed=2)
    assert _last_run(zenml_client).steps["prepare_videos"].status == ExecutionStatus.COMPLETED


def test_shard_groups_run_as_parallel_steps(zenml_client, sample_root):
    from pipelines.timewarp_data import timewarp_data

    timewarp_data.with_options(enable_cache=False)(finevideo_root=str(sample_root), shard_groups=2)
    run = _last_run(zenml_client)
    assert {"prepare_videos_0", "prepare_videos_1", "merge_corpus"} <= set(run.steps)
    corpus = run.steps["merge_corpus"].outputs["corpus"][0].load()
    assert len(corpus) == 12 and corpus.rows_read == 12


def test_cli_bare_name_with_yaml_config(zenml_client, sample_root, tmp_path):
    export = tmp_path / "export"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"parameters": {"finevideo_root": str(sample_root), "export_dir": str(export), "max_videos": 3}}))
    env = {**os.environ}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "zenml"), "pipeline", "run", "timewarp_data", "-c", str(config)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert len(list((export / "normal_annotations").glob("*.json"))) == 3



@step
def overlapping_split(corpus: VideoCorpus) -> VideoSplit:
    """A deliberately bad split: some videos on both sides."""
    ids = [v.video_id for v in corpus.videos]
    return VideoSplit(train_ids=ids[:6], benchmark_ids=ids[4:])


@pipeline(enable_cache=False)
def leaky_data(corpus_artifact_id: str):
    corpus = Client().get_artifact_version(corpus_artifact_id)
    split = overlapping_split(corpus)
    sft, prefs, training_log = generate_training_text(corpus, split, GeneratorConfig(), 3, 0)
    normal, _, benchmark_log = generate_benchmark(corpus, split, GeneratorConfig(), 3, 0)
    check_data_quality(sft, prefs, normal, training_log, benchmark_log, split)


def test_leakage_fails_the_run(exported_run):
    from zenml.enums import ExecutionStatus

    run, _ = exported_run
    with pytest.raises(Exception):
        leaky_data(str(run.steps["merge_corpus"].outputs["corpus"][0].id))
    failed = Client().get_pipeline("leaky_data").last_run
    check = failed.steps["check_data_quality"]
    assert check.status == ExecutionStatus.FAILED
    assert any("also in training data" in v for v in check.run_metadata["violations"])


def test_openai_endpoint_from_config_alone_and_the_key_stays_secret(zenml_client, sample_root, tmp_path, monkeypatch):
    """A run YAML switches the generator to an OpenAI-compatible endpoint (a loopback
    server speaking the protocol to the real openai client); the key reaches the server
    and nothing else: not the artifact store, the ZenML database, logs or the export."""
    from chat_server import ChatServer
    from test_llm_generator import FakeLLM

    from pipelines.timewarp_data import timewarp_data

    key = "sk-test-PIPELINE-SECRET-4242"
    monkeypatch.setenv("TIMEWARP_PIPELINE_LLM_KEY", key)
    export = tmp_path / "export"
    with ChatServer(responder=FakeLLM()) as server:
        config = tmp_path / "openai.yaml"
        config.write_text(yaml.safe_dump({"parameters": {
            "finevideo_root": str(sample_root), "max_videos": 8, "export_dir": str(export),
            "generator": {"backend": "openai", "model": "fake-model", "base_url": server.base_url,
                          "api_key_env": "TIMEWARP_PIPELINE_LLM_KEY", "cache_dir": str(tmp_path / "cache"),
                          "max_retries": 0, "max_tokens": 1024},
        }}))
        timewarp_data.with_options(config_path=str(config), enable_cache=False)()
        requests = list(server.requests)
    assert requests and all(r.headers.get("authorization") == f"Bearer {key}" for r in requests)
    run = _last_run(zenml_client)
    preferences = run.steps["generate_training_text"].outputs["preference_pairs"][0].load()
    normal = run.steps["generate_benchmark"].outputs["normal_benchmark"][0].load()
    assert preferences.pairs and normal.items
    assert preferences.generator["generator"] == "openai" and preferences.generator["model"] == "fake-model"
    assert "prompt_version" in preferences.generator
    assert json.loads((export / "temporal_pref.json").read_text())

    secret = key.encode()
    for root in (Path(os.environ["ZENML_CONFIG_PATH"]), export, tmp_path / "cache"):
        for path in root.rglob("*"):
            if path.is_file():
                assert secret not in path.read_bytes(), path

"""Trained models as servable MLflow models: logged without training state, registered,
loaded by alias and answering as evaluation scores (in process and through
`mlflow models serve`); the ZenML model artifact without training state either. Tiny
Qwen2-VL models trained for one step (so their folders hold real Trainer checkpoints), a
local sqlite MLflow store, CPU, offline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("torch")
pytest.importorskip("peft")

import mlflow  # noqa: E402
import requests  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from infra.cluster.services import free_port, http_ok, wait_until  # noqa: E402
from timewarp.evaluation.extract import extract_option  # noqa: E402
from timewarp.evaluation.loglik import most_likely_answers  # noqa: E402
from timewarp.evaluation.scoring import generate_replies, lettered_prompt  # noqa: E402
from timewarp.generation.datasets import SFTDataset  # noqa: E402
from timewarp.generation.records import OPTION_LETTERS  # noqa: E402
from timewarp.generation.template import TemplateGenerator  # noqa: E402
from timewarp.data.ingest import list_shards  # noqa: E402
from timewarp.models.base import VideoSample  # noqa: E402
from timewarp.models.checkpoint import ModelCheckpoint  # noqa: E402
from timewarp.models.qwen2_vl import family  # noqa: E402
from timewarp.data.prepare import PrepareConfig, prepare_corpus  # noqa: E402
from timewarp.data.sample import make_sample  # noqa: E402
from timewarp.tracking.servable import log_servable_model  # noqa: E402
from timewarp.training.config import LoraRecipe, SFTRecipe  # noqa: E402
from timewarp.training.sft import train_sft  # noqa: E402
from timewarp.data.video import read_frames, video_info  # noqa: E402

FRAMES = 4
STATE_FILES = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-sample")
    make_sample(root, videos=2, seed=3)
    corpus, _ = prepare_corpus(list_shards(str(root)), root / "corpus", PrepareConfig(frames_per_video=FRAMES))
    return corpus


@pytest.fixture(scope="module")
def questions(corpus) -> pd.DataFrame:
    """Benchmark questions about the corpus's mp4s (one by file:// URI), then one open question."""
    items = TemplateGenerator().benchmark_text(corpus.videos, 2).items[:3]
    videos = [str(corpus.path(f"videos/{item.video_id}.mp4")) for item in items]
    videos[1] = Path(videos[1]).as_uri()
    return pd.DataFrame({
        "video": [*videos, videos[0]],
        "question": [item.question for item in items] + ["What happens in the video?"],
        "options": [list(item.options) for item in items] + [None],
    })


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> str:
    return str(family.make_tiny(tmp_path_factory.mktemp("serve-base"), seed=0))


def _train(base: str, corpus, out: Path, lora: LoraRecipe | None) -> ModelCheckpoint:
    """One real SFT step, saved as checkpoint-1 too: the folder holds optimizer and scheduler state."""
    recipe = SFTRecipe.cpu_test(
        max_steps=1, save_steps=1, learning_rate=1e-2, warmup_ratio=0.0, frames_per_video=FRAMES, lora=lora
    )
    sft = SFTDataset(TemplateGenerator().training_text(corpus.videos, 2).sft, media_root=str(corpus.root))
    train_sft(base, sft, corpus, recipe, out)
    assert (out / "checkpoint-1" / "optimizer.pt").is_file()  # so the "no training state" checks can fail
    return ModelCheckpoint(
        path=str(out), family=family.name, kind="SFT", base_model=base, adapter=lora is not None,
        recipe=recipe.to_dict(),
    )


@pytest.fixture(scope="module")
def full_model(base, corpus, tmp_path_factory) -> ModelCheckpoint:
    return _train(base, corpus, tmp_path_factory.mktemp("serve-full") / "sft", lora=None)


@pytest.fixture(scope="module")
def lora_model(base, corpus, tmp_path_factory) -> ModelCheckpoint:
    return _train(base, corpus, tmp_path_factory.mktemp("serve-lora") / "sft", lora=LoraRecipe(r=8, alpha=16))


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve-mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    # Artifacts in the temporary folder too (the default is ./mlruns under the working directory).
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("servable", (folder / "artifacts").as_uri()))
    yield uri
    mlflow.set_tracking_uri(previous)


def _champion(checkpoint: ModelCheckpoint, name: str, scorer: str) -> str:
    """Log, register and make champion; the champion's URI."""
    with mlflow.start_run():
        model_uri = log_servable_model(checkpoint, scorer=scorer)
    version = mlflow.register_model(model_uri, name).version
    mlflow.MlflowClient().set_registered_model_alias(name, "champion", version)
    return f"models:/{name}@champion"


def _files(model_uri: str) -> set[str]:
    local = Path(mlflow.artifacts.download_artifacts(model_uri))
    return {path.relative_to(local).as_posix() for path in local.rglob("*")}


def _frames(video: str):
    """The frames served rows are shown: FRAMES at the centres of equal slices of the video."""
    path = video.removeprefix("file://")
    duration = video_info(path).duration
    return read_frames(path, [(k + 0.5) * duration / FRAMES for k in range(FRAMES)])


def _expected(checkpoint: ModelCheckpoint, rows: pd.DataFrame, scorer: str, merged: bool = False) -> list[str]:
    """What evaluation's scorers pick (and greedy replies to open questions), called
    directly on the trained folder's model."""
    model, processor, model_family = checkpoint.load_merged() if merged else checkpoint.load()
    closed = [row for row in rows.itertuples() if row.options is not None]
    lettered = [VideoSample(_frames(row.video), lettered_prompt(row.question, row.options)) for row in closed]
    if scorer == "generation":
        replies = generate_replies(model, processor, model_family, lettered)
        picks = [extract_option(reply, row.options) for reply, row in zip(replies, closed, strict=True)]
        picked = [row.options[p] if p is not None else r for p, r, row in zip(picks, replies, closed, strict=True)]
    else:
        if scorer == "loglik":
            queries = [(s, list(OPTION_LETTERS[: len(row.options)])) for s, row in zip(lettered, closed, strict=True)]
        else:
            queries = [(VideoSample(_frames(row.video), row.question), row.options) for row in closed]
        picks = most_likely_answers(model, processor, model_family, queries, batch_size=8)
        picked = [row.options[pick] for pick, row in zip(picks, closed, strict=True)]
    open_rows = [row for row in rows.itertuples() if row.options is None]
    samples = [VideoSample(_frames(row.video), row.question) for row in open_rows]
    replies = generate_replies(model, processor, model_family, samples)
    answers = dict(zip([row.Index for row in closed + open_rows], picked + replies, strict=True))
    return [answers[index] for index in rows.index]


@pytest.fixture(scope="module")
def full_champion(full_model, tracking_uri) -> str:
    return _champion(full_model, "timewarp-full", "text_loglik")


def test_full_model_champion_answers_as_evaluation_scores(full_model, full_champion, questions):
    files = _files(full_champion)
    weights = {name.removeprefix("artifacts/model/") for name in files if name.startswith("artifacts/model/")}
    assert {"model.safetensors", "config.json", "tokenizer.json", "checkpoint.json", "README.md"} <= weights
    assert not [name for name in files if "checkpoint-" in name or Path(name).name in STATE_FILES]
    assert "training_log.json" not in weights

    model = mlflow.pyfunc.load_model(full_champion)
    signature = model.metadata.signature
    assert [(c.name, c.required) for c in signature.inputs.inputs] == [
        ("video", True), ("question", True), ("options", False)
    ]
    assert signature.outputs.input_names() == ["answer"]
    config = model.model_config
    assert (config["family"], config["kind"], config["scorer"], config["frames_per_video"]) == (
        "qwen2_vl", "SFT", "text_loglik", FRAMES
    )
    example = model.input_example
    assert list(example.columns) == ["video", "question", "options"]
    assert len(model.predict(example)) == len(example)  # the stored example is a valid request

    answers = model.predict(questions)["answer"].tolist()
    assert len(answers) == len(questions)
    for answer, options in zip(answers, questions["options"]):
        assert options is None or answer in options
    assert answers == _expected(full_model, questions, "text_loglik")
    assert all(isinstance(answer, str) for answer in answers)


def test_the_generation_scorer_answers_with_an_option_or_the_reply(full_model, full_champion, questions):
    model = mlflow.pyfunc.load_model(full_champion, model_config={"scorer": "generation"})
    assert model.predict(questions)["answer"].tolist() == _expected(full_model, questions, "generation")


def test_lora_on_an_external_base_logs_the_adapter_and_loads_base_plus_adapter(
    lora_model, base, tracking_uri, questions
):
    uri = _champion(lora_model, "timewarp-lora", "loglik")
    weights = {name.removeprefix("artifacts/model/") for name in _files(uri) if name.startswith("artifacts/model/")}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= weights
    assert "model.safetensors" not in weights and not [n for n in weights if n.startswith("checkpoint-")]
    model = mlflow.pyfunc.load_model(uri)
    assert (model.model_config["serves_adapter"], model.model_config["adapter_base"]) == (True, base)
    answers = model.predict(questions)["answer"].tolist()
    assert answers == _expected(lora_model, questions, "loglik")
    assert all(options is None or answer in options for answer, options in zip(answers, questions["options"]))


def test_an_adapter_of_one_of_our_models_is_logged_merged(lora_model, base, tracking_uri, questions):
    parent = ModelCheckpoint(path=base, family=family.name, kind="base")
    ours = ModelCheckpoint(**{**lora_model.to_dict(), "base_model": "zenml:0123"}, parent=parent)
    orphan = ModelCheckpoint(**{**lora_model.to_dict(), "base_model": "zenml:0123"})
    with mlflow.start_run(), pytest.raises(ValueError, match="load the adapter through its ZenML artifact"):
        log_servable_model(orphan, scorer="loglik")

    uri = _champion(ours, "timewarp-merged", "loglik")
    weights = {name.removeprefix("artifacts/model/") for name in _files(uri) if name.startswith("artifacts/model/")}
    assert {"model.safetensors", "merged.json", "checkpoint.json", "README.md"} <= weights
    assert "adapter_config.json" not in weights
    model = mlflow.pyfunc.load_model(uri)
    assert (model.model_config["serves_adapter"], model.model_config["adapter_base"]) == (False, "")
    assert model.predict(questions)["answer"].tolist() == _expected(ours, questions, "loglik", merged=True)


def test_bad_rows_are_refused_naming_the_row(full_champion, questions, tmp_path):
    model = mlflow.pyfunc.load_model(full_champion)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not an mp4")
    cases = [
        ({"video": str(tmp_path / "missing.mp4")}, "row 1: no video at .*missing.mp4; give the path or URI"),
        ({"video": str(broken)}, "row 1: cannot read an mp4 from .*broken.mp4"),
        ({"question": None}, "row 1: no question; give the text to ask"),
        ({"options": ["a", "b", "c", "d", "e"]}, None),  # text_loglik ranks any number of options
    ]
    for change, message in cases:
        rows = questions.iloc[:2].copy()
        for column, value in change.items():
            rows[column] = rows[column].astype(object)
            rows.at[1, column] = value
        if message is None:
            assert model.predict(rows)["answer"][1] in change["options"]
            continue
        with pytest.raises(MlflowException, match=message):
            model.predict(rows)
    lettered = mlflow.pyfunc.load_model(full_champion, model_config={"scorer": "loglik"})
    rows = questions.iloc[:2].copy()
    rows.at[1, "options"] = ["a", "b", "c", "d", "e"]
    with pytest.raises(MlflowException, match="row 1: 5 options, but the loglik scorer letters them A, B, C, D"):
        lettered.predict(rows)


def test_mlflow_models_serve_answers_over_http(full_champion, tracking_uri, questions, tmp_path):
    model = mlflow.pyfunc.load_model(full_champion)
    rows = questions.iloc[[0, 3]].reset_index(drop=True)
    expected = model.predict(rows)["answer"].tolist()
    port = free_port()
    log = tmp_path / "serve.log"
    # As from an activated environment: the server runs this environment's uvicorn.
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "OMP_NUM_THREADS": "1",
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
    }
    command = [
        str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", full_champion, "--env-manager", "local",
        "--host", "127.0.0.1", "--port", str(port),
    ]
    with log.open("wb") as output:
        server = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(http_ok(f"http://127.0.0.1:{port}/ping"), server, "mlflow models serve", log, timeout=120)
        payload = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
        reply = requests.post(f"http://127.0.0.1:{port}/invocations", json=payload, timeout=120)
        assert reply.status_code == 200, reply.text
        answers = [row["answer"] for row in reply.json()["predictions"]]
        assert answers == expected and answers[0] in rows["options"][0] and isinstance(answers[1], str)
        bad = {"dataframe_split": {"columns": ["video", "question"], "data": [[str(tmp_path / "none.mp4"), "Why?"]]}}
        refused = requests.post(f"http://127.0.0.1:{port}/invocations", json=bad, timeout=60)
        assert refused.status_code == 400 and "row 0: no video at" in refused.text
    finally:
        _stop(server)


def _stop(server: subprocess.Popen) -> None:
    """End the server's session (mlflow and the uvicorn it runs)."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, None)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            pass
        try:
            server.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def test_the_model_artifact_leaves_out_training_state(full_model, tmp_path):
    from materializers.model_checkpoint_materializer import ModelCheckpointMaterializer

    uri = tmp_path / "artifact"
    ModelCheckpointMaterializer(str(uri)).save(full_model)
    stored = {path.relative_to(uri).as_posix() for path in uri.rglob("*")}
    assert {"model.safetensors", "tokenizer.json", "checkpoint.json", "README.md", "training_log.json"} <= stored
    assert not [name for name in stored if name.startswith("checkpoint-") or Path(name).name in STATE_FILES]
    loaded = ModelCheckpointMaterializer(str(uri)).load(ModelCheckpoint)
    assert (loaded.path, loaded.kind, loaded.adapter) == (str(uri), "SFT", False)

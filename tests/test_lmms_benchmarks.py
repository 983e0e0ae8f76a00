"""Public benchmarks through lmms-eval, offline: the TVBench miniature in its hub layout is
read by lmms-eval's own TVBench task (rows, prompts, scoring); our adapter answers."""

from __future__ import annotations

import os
import re
import socket
import zipfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("lmms_eval")
torch = pytest.importorskip("torch")

from lmms_eval.api.instance import Instance  # noqa: E402

from timewarp.data.sample import PALETTE  # noqa: E402
from timewarp.evaluation.lmms.adapter import MissingVideoError, TimewarpLMM  # noqa: E402
from timewarp.evaluation.lmms.miniatures import (  # noqa: E402
    write_mvbench_miniature,
    write_tempcompass_miniature,
    write_tvbench_miniature,
)  # noqa: E402
from timewarp.evaluation.lmms.references import load_model_reference  # noqa: E402
from timewarp.evaluation.lmms.tasks import run_benchmarks  # noqa: E402
from timewarp.evaluation.loglik import option_logps_full  # noqa: E402
from timewarp.models.base import VideoSample  # noqa: E402
from timewarp.models.qwen2_vl import family as qwen_family  # noqa: E402

TASKS = ["tvbench_scene_transition", "tvbench_action_sequence"]


class FirstSceneModel(TimewarpLMM):
    """A rigged model that answers every question with the option naming the colour of
    the first frame it is shown: right on "which colour first", wrong on "which last"
    (the miniature's scenes have distinct colours). Everything but the model call is real."""

    def __init__(self) -> None:
        super().__init__(model=torch.nn.Linear(1, 1), processor=object(), family=qwen_family, frames_per_video=8)
        self.prompts: list[str] = []

    def _replies(self, samples, max_new_tokens, total):
        replies = []
        for sample in samples:
            self.prompts.append(sample.prompt)
            background = np.median(sample.frames[0].reshape(-1, 3).astype(float), axis=0)
            colour = min(PALETTE, key=lambda name: float(np.sum((np.array(PALETTE[name]) - background) ** 2)))
            # TVBench lists options as "A. red", MVBench as "(A) red".
            letter = re.search(rf"^\(?([A-Z])[.)] {colour}$", sample.prompt, re.MULTILINE).group(1)
            replies.append(f"{letter}. {colour}")
        return replies


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection off this machine fails the test."""
    original = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"network access to {address}")
        return original(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture(scope="module")
def tvbench(tmp_path_factory):
    root = tmp_path_factory.mktemp("tvbench")
    return root, write_tvbench_miniature(root, items_per_task=3, seed=3)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> str:
    return str(qwen_family.make_tiny(tmp_path_factory.mktemp("tiny-reference"), seed=0))


def test_rigged_model_scores_exactly_through_lmms_eval_tvbench(tvbench, tmp_path):
    root, items = tvbench
    model = FirstSceneModel()
    results = run_benchmarks(model, TASKS, {"tvbench": str(root)}, None, tmp_path)

    assert results.metrics["tvbench_scene_transition"] == {"tvbench_acc": 1.0}
    assert results.metrics["tvbench_action_sequence"] == {"tvbench_acc": 0.0}
    assert results.item_counts == {"tvbench_scene_transition": 3, "tvbench_action_sequence": 3}
    # Targets are lmms-eval's letters of the miniature's answers; prompts are TVBench's.
    letters = {(item.config, index % 3): "ABCD"[item.answer_index] for index, item in enumerate(items)}
    by_key = {(p.task.removeprefix("tvbench_"), p.doc_id): p for p in results.predictions}
    assert {key: p.target for key, p in by_key.items()} == letters
    assert all((p.scores["tvbench_acc"] == 1.0) == (p.task == "tvbench_scene_transition") for p in results.predictions)
    assert all(prompt.endswith("Answer with the option letter only.") for prompt in model.prompts)
    assert len(model.prompts) == 6

    limited = run_benchmarks(FirstSceneModel(), TASKS[:1], {"tvbench": str(root)}, 2, tmp_path / "limited")
    assert limited.item_counts == {"tvbench_scene_transition": 2}


def test_rigged_model_scores_exactly_through_lmms_eval_mvbench(tmp_path):
    items = write_mvbench_miniature(tmp_path / "mvbench", items_per_task=2, seed=5)
    model = FirstSceneModel()
    results = run_benchmarks(
        model,
        ["mvbench_scene_transition", "mvbench_action_sequence"],
        {"mvbench": str(tmp_path / "mvbench")},
        None,
        tmp_path / "out",
    )
    # MVBench reports percent.
    assert results.metrics["mvbench_scene_transition"] == {"mvbench_accuracy": 100.0}
    assert results.metrics["mvbench_action_sequence"] == {"mvbench_accuracy": 0.0}
    assert sorted(p.scores["mvbench_accuracy"] for p in results.predictions) == [0.0, 0.0, 1.0, 1.0]
    assert all(prompt.startswith("Question:") and "\nOption:\n(A) " in prompt for prompt in model.prompts)
    assert len(items) == 4


def test_unknown_benchmark_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="tvbench_scene_transition") as error:
        run_benchmarks(FirstSceneModel(), ["tvbench_scene_transitions"], {}, 1, tmp_path)
    assert "knows no task or group ['tvbench_scene_transitions']" in str(error.value)
    assert "mvbench" in str(error.value) and "tempcompass" in str(error.value)


def test_vinoground_with_a_limit_is_refused(tmp_path):
    with pytest.raises(ValueError, match="all its 500 groups: run it without a limit"):
        run_benchmarks(FirstSceneModel(), ["vinoground"], {}, 5, tmp_path)


def test_missing_video_is_an_error_naming_the_file(tmp_path):
    root = tmp_path / "root"
    write_tvbench_miniature(root, items_per_task=2, tasks=("scene_transition",), seed=3)
    archive = root / "video" / "scene_transition.zip"
    with zipfile.ZipFile(archive) as opened:
        kept = {name: opened.read(name) for name in opened.namelist() if not name.endswith("_001.mp4")}
    with zipfile.ZipFile(archive, "w") as opened:
        for name, data in kept.items():
            opened.writestr(name, data)
    with pytest.raises(
        MissingVideoError,
        match=r"tvbench_scene_transition item 1: video .*video_scene_transition_001\.mp4 does not exist",
    ):
        run_benchmarks(FirstSceneModel(), TASKS[:1], {"tvbench": str(root)}, None, tmp_path / "out")


def test_root_in_the_wrong_layout_is_refused(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "rows.json").write_text("[]")
    with pytest.raises(ValueError, match="no README.md with a YAML `configs:` list"):
        run_benchmarks(FirstSceneModel(), TASKS[:1], {"tvbench": str(tmp_path / "flat")}, None, tmp_path / "out")
    write_tvbench_miniature(tmp_path / "partial", items_per_task=1, tasks=("scene_transition",))
    (tmp_path / "partial" / "json" / "scene_transition.json").unlink()
    with pytest.raises(FileNotFoundError, match="names data file json/scene_transition.json, which is not there"):
        run_benchmarks(FirstSceneModel(), TASKS[:1], {"tvbench": str(tmp_path / "partial")}, None, tmp_path / "out")


def test_group_asking_for_configs_the_root_lacks_names_them(tvbench, tmp_path):
    root, _ = tvbench
    with pytest.raises(ValueError, match=r"lacks the configs \['action_antonym', 'action_count'") as error:
        run_benchmarks(FirstSceneModel(), ["tvbench"], {"tvbench": str(root)}, None, tmp_path)
    assert "ask for the tasks it has: ['tvbench_action_sequence', 'tvbench_scene_transition']" in str(error.value)


def test_tiny_qwen2_vl_generates_and_scores_likelihoods_through_the_adapter(tvbench, tiny_checkpoint, tmp_path):
    root, _ = tvbench
    model, processor, family = load_model_reference(tiny_checkpoint, device="cpu", dtype="float32")
    adapter = TimewarpLMM(model=model, processor=processor, family=family, frames_per_video=4, batch_size=2)
    results = run_benchmarks(adapter, TASKS[:1], {"tvbench": str(root)}, 2, tmp_path / "out")
    assert results.item_counts == {"tvbench_scene_transition": 2}
    assert [p.doc_id for p in results.predictions] == [0, 1]
    assert results.metrics["tvbench_scene_transition"]["tvbench_acc"] in (0.0, 0.5, 1.0)

    # loglikelihood over the documents lmms-eval loaded for the task above.
    task, split = "tvbench_scene_transition", "train"
    docs = adapter.task_dict[task]
    videos = tmp_path / "out" / "hf_home" / "tvbench" / "scene_transition"  # where run_benchmarks extracted them

    def tvbench_doc_to_visual(doc):
        return [str(videos / doc["video"])]

    requests = [
        Instance(
            "loglikelihood",
            ("Which colour comes first?", answer, tvbench_doc_to_visual, doc_id, task, split),
            idx=0,
            metadata={"task": task, "doc_id": doc_id, "repeats": 1},
        )
        for doc_id, answer in ((0, "A"), (1, "B"))
    ]
    scored = adapter.loglikelihood(requests)
    assert len(scored) == 2 and all(isinstance(greedy, bool) for _, greedy in scored)
    for (logp, _), doc_id, answer in zip(scored, (0, 1), ("A", "B")):
        frames = adapter._sample("Which colour comes first?", tvbench_doc_to_visual, task, split, doc_id).frames
        expected = option_logps_full(
            model, processor, family, VideoSample(frames, "Which colour comes first?"), [answer]
        )
        assert logp == pytest.approx(float(expected[0]), abs=1e-4)
        assert logp < 0
    assert docs[split][0]["video"].endswith("_000.mp4")


def test_adapter_is_registered_with_lmms_eval():
    from lmms_eval import models

    assert models.get_model("timewarp") is TimewarpLMM
    with pytest.raises(ValueError, match="either pretrained"):
        TimewarpLMM()


def test_rigged_model_scores_exactly_through_lmms_eval_tempcompass(tmp_path):
    """Multi-choice TempCompass: replies the rules read ("B. blue"), so the judge is never
    asked (it is off); first-scene questions right, last-scene ones wrong."""
    items = write_tempcompass_miniature(tmp_path / "tempcompass", items=4, seed=2)
    model = FirstSceneModel()
    results = run_benchmarks(
        model, ["tempcompass_multi_choice"], {"tempcompass": str(tmp_path / "tempcompass")}, None, tmp_path / "out"
    )
    right = sum(item.config == "scene_transition" for item in items)
    assert results.metrics["tempcompass_multi_choice"] == {
        "avg_accuracy": 100.0 * right / 4,
        "order_accuracy": 100.0 * right / 4,
    }
    assert all(prompt.endswith("\nPlease directly give the best option:") for prompt in model.prompts)
    assert [p.target for p in results.predictions] == [
        f"{'ABCD'[i.answer_index]}. {i.candidates[i.answer_index]}" for i in items
    ]


def test_model_references_load_lora_folders_and_registry_aliases(tiny_checkpoint, tmp_path):
    import mlflow
    from peft import LoraConfig, PeftModel, get_peft_model

    from timewarp.models.checkpoint import ModelCheckpoint
    from timewarp.tracking.servable import log_servable_model

    base, _ = qwen_family.load(tiny_checkpoint)
    torch.manual_seed(0)
    adapter = get_peft_model(
        base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    adapter.save_pretrained(str(tmp_path / "lora"))
    ModelCheckpoint(
        path="/elsewhere/when/trained", family="qwen2_vl", kind="SFT", base_model=tiny_checkpoint, adapter=True
    ).write_card(tmp_path / "lora")
    model, _, family = load_model_reference(str(tmp_path / "lora"), device="cpu", dtype="float32")
    assert isinstance(model, PeftModel) and family is qwen_family
    lora_a = "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.default.weight"
    assert torch.equal(model.state_dict()[lora_a], adapter.state_dict()[lora_a])

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("bench", (tmp_path / "artifacts").as_uri()))
        with mlflow.start_run():
            uri = log_servable_model(
                ModelCheckpoint(path=tiny_checkpoint, family="qwen2_vl", kind="base"), scorer="loglik"
            )
        version = mlflow.register_model(uri, "tw-bench").version
        mlflow.MlflowClient().set_registered_model_alias("tw-bench", "bench", version)
        registered, processor, family = load_model_reference("models:/tw-bench@bench")
        assert family is qwen_family and processor is not None
        original, _ = qwen_family.load(tiny_checkpoint)
        name = "model.language_model.layers.0.self_attn.q_proj.weight"
        assert torch.equal(registered.state_dict()[name].float(), original.state_dict()[name].float())
        with pytest.raises(RuntimeError, match="could not load models:/tw-bench@missing"):
            load_model_reference("models:/tw-bench@missing")
    finally:
        mlflow.set_tracking_uri(previous)

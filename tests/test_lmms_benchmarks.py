"""Public benchmarks through lmms-eval, offline: the TVBench miniature in its hub layout is
read by lmms-eval's own TVBench task (rows, prompts, scoring); our adapter answers."""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
import zipfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("lmms_eval")
torch = pytest.importorskip("torch")

from lmms_eval.api.instance import Instance  # noqa: E402

from tests.chat_server import ChatServer  # noqa: E402
from timewarp.data.sample import PALETTE  # noqa: E402
from timewarp.evaluation.lmms.adapter import MissingVideoError, TimewarpLMM  # noqa: E402
from timewarp.evaluation.lmms.miniatures import (  # noqa: E402
    write_mvbench_miniature,
    write_tempcompass_miniature,
    write_tvbench_miniature,
)  # noqa: E402
from timewarp.evaluation.lmms.references import load_model_reference  # noqa: E402
from timewarp.evaluation.lmms.tasks import JudgeEndpoint, run_benchmarks  # noqa: E402
from timewarp.evaluation.lmms.vinoground_miniature import (  # noqa: E402
    answer_letters,
    write_vinoground_miniature,
)
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

    @staticmethod
    def first_colour(sample) -> str:
        background = np.median(sample.frames[0].reshape(-1, 3).astype(float), axis=0)
        return min(PALETTE, key=lambda name: float(np.sum((np.array(PALETTE[name]) - background) ** 2)))

    def reply(self, prompt: str, colour: str) -> str:
        # TVBench lists options as "A. red", MVBench as "(A) red".
        letter = re.search(rf"^\(?([A-Z])[.)] {colour}$", prompt, re.MULTILINE).group(1)
        return f"{letter}. {colour}"

    def _replies(self, samples, max_new_tokens, total):
        replies = []
        for sample in samples:
            self.prompts.append(sample.prompt)
            replies.append(self.reply(sample.prompt, self.first_colour(sample)))
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
    with pytest.raises(ValueError, match=r"whole groups \(four items each\): run it without a limit"):
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


class TempCompassModel(FirstSceneModel):
    """Rigged for every TempCompass config, always by the first frame's colour: right on
    first-colour questions, wrong on last-colour ones, except yes/no about the last colour,
    where it replies what the rules cannot read ("I cannot tell.")."""

    def reply(self, prompt: str, colour: str) -> str:
        if prompt.endswith("\nPlease answer yes or no:"):
            if " shown last " in prompt:
                return "I cannot tell."
            return "yes" if prompt.startswith(f"Is {colour} ") else "no"
        if "\nCaption A: " in prompt:
            return re.search(rf"^Caption [AB]: {colour} .*$", prompt, re.MULTILINE).group(0)
        if prompt.startswith("Describe"):
            return f"The video starts {colour}."
        return super().reply(prompt, colour)


def caption_judge(messages) -> str:
    """A judge that reads the colour a description starts with and picks that option, and
    finds every yes/no reply it is shown correct."""
    prompt = messages[-1]["content"]
    if "Video Description:" not in prompt:
        return "Correct"
    colour = re.search(r"starts (\w+)", prompt.rsplit("Video Description:", 1)[1]).group(1)
    option = re.search(rf"^[A-D]\. {colour}$", prompt.rsplit("Multi-Choice Question:", 1)[1], re.MULTILINE).group(0)
    return f"Reasoning: the description names {colour} first.\nAnswer: {option}"


def test_rigged_model_scores_exactly_through_lmms_eval_tempcompass(tmp_path):
    """Every TempCompass config through its rules with the judge off: first-colour items
    right, last-colour ones wrong (2 of 4 each); yes/no's unreadable replies score 0 at once
    and are counted; judge-only captioning is left out and reported."""
    items = write_tempcompass_miniature(tmp_path / "tempcompass", items=4, seed=2)
    assert [item.config for item in items] == ["scene_transition", "action_sequence"] * 2
    model = TempCompassModel()
    started = time.monotonic()
    results = run_benchmarks(model, ["tempcompass"], {"tempcompass": str(tmp_path / "tempcompass")}, None,
                             tmp_path / "out")
    half = {"avg_accuracy": 50.0, "order_accuracy": 50.0}
    assert results.metrics == {
        "tempcompass_multi_choice": {**half, "rule_unread_items": 0.0},
        "tempcompass_yes_no": {**half, "rule_unread_items": 2.0},
        "tempcompass_caption_matching": {**half, "rule_unread_items": 0.0},
    }
    assert list(results.skipped) == ["tempcompass_captioning"]
    assert "not scored: scored by a judge model only" in "\n".join(results.table_lines())
    assert time.monotonic() - started < 60  # no judge retries (10 x 1-2 s per unread item)
    suffixes = {prompt.rsplit("\n", 1)[-1] for prompt in model.prompts}
    assert suffixes == {"Please directly give the best option:", "Please answer yes or no:"}
    mc = [p for p in results.predictions if p.task == "tempcompass_multi_choice"]
    assert [p.target for p in mc] == [f"{'ABCD'[i.answer_index]}. {i.candidates[i.answer_index]}" for i in items]

    with pytest.raises(ValueError, match="tempcompass_captioning is scored by a judge model only"):
        run_benchmarks(model, ["tempcompass_captioning"], {"tempcompass": str(tmp_path / "tempcompass")}, None,
                       tmp_path / "out2")


def test_tempcompass_judge_is_the_configured_loopback_endpoint(tmp_path):
    """With a judge endpoint, lmms-eval's own judge calls go to it over HTTP: yes/no replies
    the rules cannot read are judged, captioning is scored through its multi-choice question."""
    write_tempcompass_miniature(tmp_path / "tempcompass", items=4, seed=2, configs=("yes_no", "captioning"))
    with ChatServer(responder=caption_judge) as server:
        results = run_benchmarks(
            TempCompassModel(),
            ["tempcompass_yes_no", "tempcompass_captioning"],
            {"tempcompass": str(tmp_path / "tempcompass")},
            None,
            tmp_path / "out",
            JudgeEndpoint(f"{server.base_url}/chat/completions", api_key_env="TIMEWARP_TEST_JUDGE_KEY"),
        )
        judged = server.chat_requests()
    assert results.metrics["tempcompass_yes_no"] == {"avg_accuracy": 100.0, "order_accuracy": 100.0,
                                                      "rule_unread_items": 2.0}
    assert results.metrics["tempcompass_captioning"] == {"avg_accuracy": 50.0, "order_accuracy": 50.0,
                                                         "rule_unread_items": 4.0}
    assert len(judged) == 2 + 4 and not results.skipped


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


class FirstColourThenAModel(FirstSceneModel):
    """Rigged for Vinoground: a text question gets the caption that starts with the first
    frame's colour (always right); a video question always gets "A" (right only where the
    caption's segment comes first)."""

    def reply(self, prompt: str, colour: str) -> str:
        if "\nCaption: " in prompt:
            return "A"
        return re.search(rf"^([AB])\. {colour} turns into", prompt, re.MULTILINE).group(1)


def test_rigged_model_scores_exactly_through_lmms_eval_vinoground(tmp_path):
    """lmms-eval's Vinoground rows, prompts and per-item rule over 4 groups (its own aggregator
    needs all 500): text right everywhere; video items both "A" only in group 0, so video
    and group scores are 1 in 4."""
    rows = write_vinoground_miniature(tmp_path / "vinoground", groups=4, seed=1)
    assert [answer_letters(g)["video", "pos"] + answer_letters(g)["video", "neg"] for g in range(4)] == [
        "AA", "AB", "BA", "BB"]
    model = FirstColourThenAModel()
    results = run_benchmarks(model, ["vinoground"], {"vinoground": str(tmp_path / "vinoground")}, None, tmp_path / "out")
    assert results.metrics["vinoground"] == {
        "vinoground_text_score": 100.0,
        "vinoground_video_score": 25.0,
        "vinoground_group_score": 25.0,
    }
    assert results.item_counts == {"vinoground": 16} and len(rows) == 16
    assert all(prompt.endswith("\nPlease only output one English character.") for prompt in model.prompts)
    assert sum("\nCaption: " in prompt for prompt in model.prompts) == 8


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A tiny data-stage export (library calls, as the data stage makes one): 3 videos with
    rendered shuffled videos, 2 questions each, and the paper's benchmark files."""
    from timewarp.data.export import export_corpus
    from timewarp.data.ingest import list_shards
    from timewarp.data.prepare import PrepareConfig, prepare_corpus
    from timewarp.data.sample import make_sample
    from timewarp.generation.datasets import MCQBenchmark, PreferenceDataset, SFTDataset
    from timewarp.generation.formats import export_text
    from timewarp.generation.template import TemplateGenerator

    root = tmp_path_factory.mktemp("export")
    make_sample(root / "raw", videos=3, seed=4)
    corpus, rejections = prepare_corpus(list_shards(str(root / "raw")), root / "corpus",
                                        PrepareConfig(frames_per_video=2, render_shuffled_videos=True), workers=1)
    generator = TemplateGenerator()
    items = generator.benchmark_text(corpus.videos, 2).items
    training = generator.training_text(corpus.videos, 1)
    export_corpus(corpus, rejections, str(root / "export"))
    export_text(str(root / "export"), SFTDataset(training.sft), PreferenceDataset(training.preferences),
                MCQBenchmark(items, "normal"), MCQBenchmark(items, "shuffled"))
    return root / "export", items


class NormalAnswerModel(FirstSceneModel):
    """Rigged: answers every question with its answer on the ORIGINAL video (looked up by
    the question), whatever it is shown: right on ``timewarp_normal``, and on
    ``timewarp_shuffled`` right exactly where shuffling left the answer unchanged."""

    def __init__(self, items) -> None:
        super().__init__()
        self.answers = {item.question_with_options(): "ABCD"[item.answer_index] for item in items}
        self.videos: list[str] = []

    def _video_path(self, doc_to_visual, task, split, doc_id):
        self.videos.append(super()._video_path(doc_to_visual, task, split, doc_id))
        return self.videos[-1]

    def reply(self, prompt: str, colour: str) -> str:
        return f"{self.answers[prompt.rsplit(chr(10), 1)[0]]}."


def test_rigged_model_scores_exactly_on_our_benchmarks_as_lmms_eval_tasks(export, tmp_path):
    root, items = export
    assert len({item.question_with_options() for item in items}) == len(items)
    unchanged = sum(item.answer_index == item.shuffled_answer_index for item in items)
    assert unchanged < len(items)  # the shuffled score must differ from the normal one
    model = NormalAnswerModel(items)
    results = run_benchmarks(model, ["timewarp_normal", "timewarp_shuffled"], {"timewarp": str(root)}, None,
                             tmp_path / "out")
    assert results.metrics == {
        "timewarp_normal": {"accuracy": 1.0},
        "timewarp_shuffled": {"accuracy": pytest.approx(unchanged / len(items))},
    }
    assert results.item_counts == {"timewarp_normal": len(items), "timewarp_shuffled": len(items)}
    assert all(prompt.endswith("\nAnswer with the option's letter.") for prompt in model.prompts)
    assert sorted(model.videos) == sorted(
        [str(root / folder / f"{item.video_id}.mp4") for folder in ("normal_videos", "shuffled_videos")
         for item in items])


def test_our_benchmarks_refuse_a_missing_root_or_video(export, tmp_path):
    root, items = export
    with pytest.raises(ValueError, match=r"give benchmark_roots \{'timewarp': <export_dir>\}"):
        run_benchmarks(FirstSceneModel(), ["timewarp_normal"], {}, None, tmp_path)
    partial_export = tmp_path / "partial"
    shutil.copytree(root, partial_export, ignore=shutil.ignore_patterns("trl_preference", "frames"))
    (partial_export / "shuffled_videos" / f"{items[0].video_id}.mp4").unlink()
    with pytest.raises(FileNotFoundError, match=rf"timewarp_shuffled: 2 of {len(items)} items have no video in "
                       rf".*shuffled_videos \(first: \['{items[0].video_id}'\]\)\. Shuffled videos are exported only"):
        run_benchmarks(FirstSceneModel(), ["timewarp_shuffled"], {"timewarp": str(partial_export)}, None, tmp_path)
    (partial_export / "timewarp_normal_benchmark.json").unlink()
    with pytest.raises(FileNotFoundError, match="timewarp_normal_benchmark.json does not exist"):
        run_benchmarks(FirstSceneModel(), ["timewarp_normal"], {"timewarp": str(partial_export)}, None, tmp_path)


def test_explicit_runs_public_benchmarks_after_registration_only_when_asked(local_stack):
    """The composition ZenML would run: off by default (no step added); with
    ``public_benchmarks``, the candidate and the champion are scored after registration and
    logged to nested MLflow runs in ``timewarp_evaluate``, told apart by role."""
    from pipelines.timewarp_explicit import timewarp_explicit

    default = timewarp_explicit.with_options()
    default.prepare()
    assert not [name for name in default.invocations if "public_benchmarks" in name]

    asked = timewarp_explicit.with_options()
    asked.prepare(public_benchmarks=["tvbench", "timewarp_normal"],
                  benchmark_roots={"tvbench": "/data/TVBench", "timewarp": "/data/export"}, public_benchmark_limit=5)
    invocations = asked.invocations
    candidate, champion = invocations["score_public_benchmarks_candidate"], invocations["score_public_benchmarks_champion"]
    assert "register_model" in candidate.upstream_steps and "register_model" in champion.upstream_steps
    assert candidate.input_artifacts["checkpoint"].invocation_id == "train_dpo"
    assert champion.parameters["model"] == "models:/timewarp-explicit@champion"
    for invocation in (candidate, champion):
        assert invocation.parameters["benchmarks"] == ["tvbench", "timewarp_normal"]
        assert invocation.parameters["benchmark_roots"] == {"tvbench": "/data/TVBench", "timewarp": "/data/export"}
        assert invocation.parameters["limit"] == 5
    for role in ("candidate", "champion"):
        log = invocations[f"log_public_benchmarks_{role}"]
        assert log.input_artifacts["public_benchmark_results"].invocation_id == f"score_public_benchmarks_{role}"
        tracker = log.step.configuration.settings["experiment_tracker"]
        assert (tracker.experiment_name, tracker.nested, tracker.tags) == ("timewarp_evaluate", True, {"role": role})

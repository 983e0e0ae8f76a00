"""Qwen2-VL family adapter, recipes, collators, reference log-probs and DPO/SFT training on
a tiny random-weight model (CPU, offline)."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("peft")

from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, TrainerCallback  # noqa: E402

from timewarp.data.corpus import VideoCorpus  # noqa: E402
from timewarp.generation.datasets import PreferenceDataset, SFTDataset  # noqa: E402
from timewarp.generation.template import TemplateGenerator  # noqa: E402
from timewarp.data.ingest import list_shards  # noqa: E402
from timewarp.models.base import VideoSample  # noqa: E402
from timewarp.models.batches import truncate_batch  # noqa: E402
from timewarp.models.frames import select_frames  # noqa: E402
from timewarp.models.logprobs import completion_logps  # noqa: E402
from timewarp.models.qwen2_vl import VIDEO_PAD, QwenVLFamily, available_variants, family  # noqa: E402
from timewarp.models.registry import FAMILIES, family_by_name, family_for, register  # noqa: E402
from timewarp.data.prepare import PrepareConfig, prepare_corpus  # noqa: E402
from timewarp.data.sample import make_sample  # noqa: E402
from timewarp.training.collator import (  # noqa: E402
    FrameSource,
    VideoPreferenceCollator,
    VideoSFTCollator,
    preference_rows,
    sft_rows,
)
from timewarp.training.common import lora_config  # noqa: E402
from timewarp.training.config import (  # noqa: E402
    DPORecipe,
    LoraRecipe,
    SFTRecipe,
    continued_sft_recipe,
    examples_seen,
)
from timewarp.training.dpo import REFERENCE_FILE, build_dpo_trainer, train_dpo  # noqa: E402
from timewarp.training.launch import (  # noqa: E402
    in_distributed_launch,
    run_training,
    should_relaunch,
    torchrun_command,
)
from timewarp.training.reference import (  # noqa: E402
    REF_CHOSEN,
    REF_REJECTED,
    compute_reference_logps,
    load_reference_logps,
    save_reference_logps,
    with_reference_logps,
)
from timewarp.training.sft import train_sft  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SMALL_LORA = LoraRecipe(r=8, alpha=16)


# -- shared data -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> VideoCorpus:
    """4 generated videos (96x64 frames), 4 frames each."""
    root = tmp_path_factory.mktemp("train-sample")
    make_sample(root, videos=4, seed=3)
    corpus, _ = prepare_corpus(list_shards(str(root)), root / "corpus", PrepareConfig(frames_per_video=4))
    assert len(corpus) == 4
    return corpus


@pytest.fixture(scope="module")
def training_text(corpus):
    return TemplateGenerator().training_text(corpus.videos, 3)


@pytest.fixture(scope="module")
def preferences(corpus, training_text) -> PreferenceDataset:
    return PreferenceDataset(training_text.preferences, media_root=str(corpus.root))


@pytest.fixture(scope="module")
def sft_examples(corpus, training_text) -> SFTDataset:
    return SFTDataset(training_text.sft, media_root=str(corpus.root))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return str(family.make_tiny(tmp_path_factory.mktemp("tiny-qwen2-vl"), seed=0))


def _losses(result) -> list[float]:
    return [entry["loss"] for entry in result.history]


# -- family adapter and registry -------------------------------------------------------------


@pytest.mark.parametrize("variant", available_variants())
def test_tiny_checkpoint_loads_offline_through_auto_classes(tmp_path, variant, corpus):
    path = family.make_tiny(tmp_path / variant, seed=1, variant=variant)
    assert AutoConfig.from_pretrained(path, local_files_only=True).model_type == variant
    model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True)
    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    assert type(processor).__name__.lower().replace("_", "").startswith(variant.replace("_", ""))
    assert family_for(path) is family
    assert sum(p.numel() for p in model.parameters()) < 1_000_000

    # Deterministic for a seed.
    again, _ = family.load(str(family.make_tiny(tmp_path / f"{variant}-again", seed=1, variant=variant)))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))

    frames = corpus.frames(corpus.videos[0])
    batch = family.encode(processor, [VideoSample(frames, "What happens first?", "A red scene.")])
    inputs = {k: v for k, v in batch.items() if k != "completion_mask"}
    logits = model(**inputs).logits
    assert logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(logits).all()

    # LoRA adapts the language model only (Qwen2.5-VL's vision MLP has gate/up/down_proj too);
    # the projector is trained in full.
    from peft import get_peft_model

    peft_model = get_peft_model(model, lora_config(family, model, DPORecipe.cpu_test(lora=SMALL_LORA)))
    adapted = {name.split(".lora_")[0] for name, _ in peft_model.named_parameters() if ".lora_" in name}
    assert adapted and all(".language_model." in name for name in adapted)
    trainable_vision = {n for n, p in peft_model.named_parameters() if p.requires_grad and ".visual." in n}
    assert trainable_vision and all("merger" in name for name in trainable_vision)


def test_registry_lookup(tmp_path):
    assert family_by_name("qwen2_vl") is family
    assert FAMILIES["qwen2_vl"] is family
    with pytest.raises(KeyError, match="no video-LLM family"):
        family_by_name("no-such-family")
    from tiny_text_lm import make_tiny_chat_lm

    with pytest.raises(ValueError, match="qwen2"):  # a text-only Qwen2 is no registered family
        family_for(make_tiny_chat_lm(tmp_path / "text-lm"))

    class Clash:
        name = "other"
        model_types = ("qwen2_vl",)

    with pytest.raises(ValueError, match="both claim"):
        register(Clash())  # type: ignore[arg-type]


def test_encode_marks_only_the_answer_and_keeps_frame_size(tiny, corpus):
    _, processor = family.load(tiny)
    frames = corpus.frames(corpus.videos[0])  # (4, 64, 96, 3)
    samples = [
        VideoSample(frames, "What happens first?", "A red scene, then a blue one."),
        VideoSample(frames[:2], "Short?", "Yes."),
        VideoSample(frames, "No answer here?", None),
    ]
    batch = family.encode(processor, samples)
    tokenizer = processor.tokenizer
    ids, attention, completion = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    assert ids.shape == attention.shape == completion.shape == batch["mm_token_type_ids"].shape

    # Completion tokens decode to exactly the answer and the end of the assistant turn.
    for row, sample in enumerate(samples[:2]):
        answer = tokenizer.decode(ids[row][completion[row].bool()])
        assert answer == f"{sample.completion}<|im_end|>\n"
        prompt = tokenizer.decode(ids[row][(attention[row] == 1) & (completion[row] == 0)])
        assert prompt.endswith("<|im_start|>assistant\n") and sample.prompt in prompt
    assert completion[2].sum() == 0
    # Padding (right side) is neither attended nor trained on.
    assert (completion.bool() <= attention.bool()).all()
    short = int(attention[1].sum())
    assert short < ids.shape[1] and attention[1, short:].sum() == 0
    assert (ids[1, short:] == tokenizer.pad_token_id).all()

    # 96x64 frames are not upscaled: 56x84 after rounding to the 28-pixel grid -> 4x6 patches.
    assert batch["video_grid_thw"].tolist() == [[2, 4, 6], [1, 4, 6], [2, 4, 6]]
    assert batch["pixel_values_videos"].shape[0] == int(batch["video_grid_thw"].prod(dim=1).sum())
    # One placeholder per merged 2x2 patch group, flagged in mm_token_type_ids.
    video_id = tokenizer.convert_tokens_to_ids(VIDEO_PAD)
    is_video = ids == video_id
    assert is_video.sum(dim=1).tolist() == [12, 6, 12]
    assert torch.equal(batch["mm_token_type_ids"] != 0, is_video)


def test_frame_bounds_are_explicit(tiny, corpus):
    """A family with a larger minimum frame area enlarges the same frames (proves the bounds
    passed per call are the ones applied)."""
    _, processor = family.load(tiny)
    frames = corpus.frames(corpus.videos[0])
    big = QwenVLFamily(min_frame_pixels=112 * 168)
    grid = big.encode(processor, [VideoSample(frames, "Q?", "A.")])["video_grid_thw"]
    assert grid.tolist() == [[2, 8, 12]]


def test_select_frames_spreads_evenly():
    frames = np.arange(8)[:, None, None, None] * np.ones((8, 2, 2, 3), dtype=np.uint8)
    assert select_frames(frames, 4)[:, 0, 0, 0].tolist() == [0, 2, 5, 7]
    assert select_frames(frames, 2)[:, 0, 0, 0].tolist() == [0, 7]
    assert select_frames(frames, 8) is frames and select_frames(frames, 20) is frames
    assert select_frames(frames, None) is frames
    with pytest.raises(ValueError):
        select_frames(frames, 0)


# -- collators -------------------------------------------------------------------------------


def test_preference_collator_puts_chosen_then_rejected(tiny, corpus, preferences):
    _, processor = family.load(tiny)
    rows = with_reference_logps(preference_rows(preferences)[:3], [(-1.0, -2.0), (-3.0, -4.0), (-5.0, -6.0)])
    for index, row in enumerate(rows):
        row["video_id"] = f"v{index}"
    # Distinct solid-colour videos, so each row's pixels are recognisable.
    videos = {f"v{i}": np.full((2, 64, 96, 3), 60 * i, dtype=np.uint8) for i in range(3)}
    collator = VideoPreferenceCollator(family, processor, videos.__getitem__)
    batch = collator(rows)
    assert batch["input_ids"].shape[0] == 6
    tokenizer = processor.tokenizer
    for index, row in enumerate(rows):
        chosen = tokenizer.decode(batch["input_ids"][index][batch["completion_mask"][index].bool()])
        rejected = tokenizer.decode(batch["input_ids"][index + 3][batch["completion_mask"][index + 3].bool()])
        assert chosen.startswith(row["chosen"]) and rejected.startswith(row["rejected"])
    # 2 frames -> one temporal patch; videos in row order, repeated for the rejected rows.
    assert batch["video_grid_thw"].tolist() == [[1, 4, 6]] * 6
    half = batch["pixel_values_videos"].shape[0] // 2
    assert torch.equal(batch["pixel_values_videos"][:half], batch["pixel_values_videos"][half:])
    means = batch["pixel_values_videos"].view(6, -1).mean(dim=1)
    assert means[0] < means[1] < means[2] and torch.equal(means[:3], means[3:])
    assert batch[REF_CHOSEN].tolist() == [-1.0, -3.0, -5.0]
    assert batch[REF_REJECTED].tolist() == [-2.0, -4.0, -6.0]

    assert truncate_batch(batch, None) is batch
    with pytest.raises(ValueError, match="cut video tokens"):
        truncate_batch(batch, 10)
    cut = truncate_batch(batch, batch["input_ids"].shape[1] - 2)
    assert cut["input_ids"].shape[1] == batch["input_ids"].shape[1] - 2
    assert cut["pixel_values_videos"] is batch["pixel_values_videos"]


def test_sft_collator_labels_only_the_answer(tiny, corpus, sft_examples):
    _, processor = family.load(tiny)
    rows = sft_rows(sft_examples)[:2]
    batch = VideoSFTCollator(family, processor, FrameSource(corpus, 4))(rows)
    assert "completion_mask" not in batch
    for index, row in enumerate(rows):
        labelled = batch["labels"][index][batch["labels"][index] != -100]
        assert processor.tokenizer.decode(labelled) == f"{row['completion']}<|im_end|>\n"
    assert torch.equal(batch["labels"] != -100, (batch["labels"] == batch["input_ids"]) & (batch["labels"] != -100))


# -- recipes ---------------------------------------------------------------------------------


def test_recipe_defaults_yaml_and_trl_arguments(tmp_path):
    recipe = DPORecipe()
    assert (recipe.loss_type, recipe.beta, recipe.learning_rate) == ("sigmoid", 0.1, 5e-7)
    assert recipe.projector_learning_rate == 2e-5 and recipe.lr_scheduler_type == "linear"
    assert (recipe.num_train_epochs, recipe.warmup_ratio, recipe.weight_decay) == (3, 0.1, 0.0)
    assert (recipe.per_device_train_batch_size, recipe.gradient_accumulation_steps, recipe.save_steps) == (4, 4, 500)
    assert recipe.bf16 and recipe.gradient_checkpointing and recipe.precompute_ref_log_probs
    assert recipe.lora == LoraRecipe(r=128, alpha=256, dropout=0.05)
    assert recipe.frames_per_video == 8 and recipe.max_length is None and recipe.deepspeed is None

    path = tmp_path / "recipe.yaml"
    path.write_text(
        textwrap.dedent(
            """
            recipe:
              loss_type: [sigmoid, sft]
              loss_weights: [1.0, 0.5]
              beta: 0.2
              lora: {r: 16}
              deepspeed: configs/deepspeed/zero2.json
            """
        )
    )
    loaded = DPORecipe.from_yaml(path, learning_rate=1e-6)
    assert loaded.loss_types == ["sigmoid", "sft"] and loaded.beta == 0.2 and loaded.learning_rate == 1e-6
    assert loaded.lora == LoraRecipe(r=16) and loaded.deepspeed == "configs/deepspeed/zero2.json"
    assert DPORecipe.from_yaml(loaded.to_yaml(tmp_path / "again.yaml")) == loaded
    assert DPORecipe.from_dict({"lora": None}).lora is None
    with pytest.raises(ValueError, match="unknown DPORecipe fields"):
        DPORecipe.from_dict({"learning_rte": 1.0})
    with pytest.raises(ValueError, match="loss_weights"):
        DPORecipe(loss_type=["sigmoid", "sft"], loss_weights=[1.0])

    args = DPORecipe.cpu_test(loss_type=["sigmoid", "sft"], trl_overrides={"max_grad_norm": 0.5})
    args = args.to_trl(tmp_path / "out")
    assert args.loss_type == ["sigmoid", "sft"] and args.warmup_steps == 0.1 and args.max_grad_norm == 0.5
    assert args.precompute_ref_log_probs and not args.remove_unused_columns and args.use_cpu
    sft_args = SFTRecipe.cpu_test().to_trl(tmp_path / "sft")
    assert sft_args.dataset_kwargs == {"skip_prepare_dataset": True} and sft_args.learning_rate == 2e-5

    for stage in (2, 3):
        config = json.loads((REPO_ROOT / f"configs/deepspeed/zero{stage}.json").read_text())
        assert config["zero_optimization"]["stage"] == stage
        assert config["train_micro_batch_size_per_gpu"] == "auto" and "optimizer" not in config


def test_control_recipe_matches_dpo_budget_and_examples():
    sft = SFTRecipe.cpu_test(learning_rate=2e-3, per_device_train_batch_size=8, num_train_epochs=5)
    dpo = DPORecipe.cpu_test(learning_rate=1e-3, per_device_train_batch_size=4, num_train_epochs=2, warmup_ratio=0.1)
    # DPO sees every pair twice: 2 x 702 examples, in steps of 4.
    assert examples_seen(dpo, 702) == 1404
    control = continued_sft_recipe(sft, dpo, 702)
    assert control.max_steps == 351 and control.per_device_train_batch_size == 4
    assert (control.learning_rate, control.warmup_ratio) == (1e-3, 0.1)
    assert control.frames_per_video == sft.frames_per_video and control.lora == sft.lora
    # A DPO run capped by max_steps: the same number of steps' examples.
    assert continued_sft_recipe(sft, dpo.replace(max_steps=3), 702).max_steps == 3
    # In 2 processes each step sees twice the examples: half the steps, and the same processes.
    dpo2 = dpo.replace(num_processes=2)
    assert examples_seen(dpo2.replace(max_steps=3), 702, processes=2) == 24
    parallel = continued_sft_recipe(sft, dpo2, 702, processes=2)
    assert parallel.max_steps == 176 and parallel.num_processes == 2
    assert continued_sft_recipe(sft, dpo2.replace(max_steps=3), 702, processes=2).max_steps == 3
    # Shared overrides: SFT takes its own fields only.
    assert SFTRecipe.own_fields({"beta": 0.2, "max_steps": 3}) == {"max_steps": 3}


# -- reference log-probs ---------------------------------------------------------------------


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_precomputed_reference_equals_live_reference(tmp_path, tiny, corpus, preferences, lora):
    model, processor = family.load(tiny)
    collator = VideoPreferenceCollator(family, processor, FrameSource(corpus, 4))
    rows = preference_rows(preferences)[:4]
    recipe = DPORecipe.cpu_test(lora=SMALL_LORA if lora else None, precompute_ref_log_probs=False)
    with pytest.raises(ValueError, match="lack ref_chosen_logps"):  # the trainer needs stored values
        build_dpo_trainer(
            model, processor, family, rows, collator, recipe.replace(precompute_ref_log_probs=True), tmp_path
        )
    check_stored_reference_matches_live(family, tiny, model, processor, collator, rows, recipe, tmp_path, lora)


def check_stored_reference_matches_live(family, tiny, model, processor, collator, rows, recipe, tmp_path, lora):
    """Stored reference log-probs equal TRL's live ones (a separate reference model for full
    fine-tuning; the policy with adapters disabled for LoRA). Shared by the family tests."""
    ref_model = None if lora else family.load(tiny)[0]
    trainer = build_dpo_trainer(model, processor, family, rows, collator, recipe, tmp_path, ref_model=ref_model)
    if lora:  # trained-looking adapters, so "adapters disabled" is not a no-op
        with torch.no_grad():
            for name, parameter in trainer.model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0.0, 0.5)
    stored = compute_reference_logps(trainer.model if lora else model, collator, rows, batch_size=2)
    live = []
    for start in (0, 2):
        batch = collator(rows[start : start + 2])
        chosen, rejected = trainer.compute_ref_log_probs(trainer.ref_model or trainer.model, batch)
        live.extend(zip(chosen.tolist(), rejected.tolist()))
    assert np.allclose(stored, live, rtol=1e-5, atol=1e-3)
    assert all(value < 0 for pair in stored for value in pair)
    if lora:
        with torch.no_grad():
            adapted = completion_logps(trainer.model, collator(rows[:2]))
        assert not np.allclose(adapted[:2].tolist(), [pair[0] for pair in stored[:2]], atol=1e-2)


# -- training --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lora", "loss_type"),
    [(True, "sigmoid"), (False, "sigmoid"), (True, ["sigmoid", "sft"])],
    ids=["lora", "full", "lora-sigmoid+sft"],
)
def test_dpo_runs_and_writes_outputs(tmp_path, tiny, corpus, preferences, lora, loss_type):
    recipe = DPORecipe.cpu_test(
        max_steps=3, learning_rate=1e-3, save_steps=2, lora=SMALL_LORA if lora else None, loss_type=loss_type
    )
    versions = {"preferences": "timewarp_preferences:7", "corpus": "timewarp_corpus:3"}
    out = tmp_path / "dpo"
    result = train_dpo(tiny, preferences, corpus, recipe, out, data_versions=versions)

    assert [entry["step"] for entry in result.history] == [1, 2, 3]
    assert all(math.isfinite(loss) for loss in _losses(result))
    if loss_type == "sigmoid":  # the policy is the reference at step 1
        assert result.history[0]["loss"] == pytest.approx(math.log(2), abs=1e-3)
    else:  # plus the answers' mean token NLL (~ln 517 for random weights)
        assert result.history[0]["loss"] > math.log(2) + 1.0
    assert result.history[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-3)
    assert result.base_model == tiny and result.recipe is recipe and result.resumed_from is None
    assert "train_runtime" in result.final_metrics
    log = json.loads((out / "training_log.json").read_text())
    for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert all(key in entry for entry in log)
    card = (out / "README.md").read_text()
    assert tiny in card and "timewarp_preferences:7" in card and "beta: 0.1" in card
    assert (out / "checkpoint-2").is_dir() and (out / REFERENCE_FILE).is_file()
    assert AutoProcessor.from_pretrained(out, local_files_only=True).tokenizer.pad_token == "<|endoftext|>"

    base, _ = family.load(tiny)
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    if lora:
        from peft import PeftModel

        assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
        tuned = PeftModel.from_pretrained(base, out).merge_and_unload()
    else:
        assert (out / "model.safetensors").is_file()
        tuned, _ = family.load(str(out))
    tuned_state = tuned.state_dict()
    changed = {k for k, v in base_state.items() if not torch.equal(v, tuned_state[k])}
    assert any(".language_model." in k for k in changed)
    assert any(".visual.merger." in k for k in changed)  # the projector trains (own learning rate)
    assert not any(".visual." in k and ".merger." not in k for k in changed)  # the vision encoder does not


def test_dpo_reward_margin_rises(tmp_path, tiny, corpus, preferences):
    """12 pairs, batch 2: epoch 2 sees the pairs again; with a high learning rate the policy
    now prefers the chosen answers."""
    recipe = DPORecipe.cpu_test(
        max_steps=12,
        learning_rate=1e-2,
        lora=SMALL_LORA,
        save_steps=100,
        warmup_ratio=0.0,
        lr_scheduler_type="constant",
    )
    result = train_dpo(tiny, preferences, corpus, recipe, tmp_path / "dpo")
    margins = [entry["rewards/margins"] for entry in result.history]
    assert len(margins) == 12
    assert np.mean(margins[6:]) > np.mean(margins[:6]) + 0.3
    assert np.mean(margins[6:]) > 0.5
    assert np.mean(_losses(result)[6:]) < math.log(2)


def test_sft_runs(tmp_path, tiny, corpus, sft_examples):
    recipe = SFTRecipe.cpu_test(max_steps=6, learning_rate=3e-3, lora=None, save_steps=100, warmup_ratio=0.0)
    result = train_sft(tiny, sft_examples, corpus, recipe, tmp_path / "sft", data_versions={"sft": "v1"})
    losses = _losses(result)
    assert len(losses) == 6 and all(math.isfinite(loss) for loss in losses)
    assert np.mean(losses[3:]) < np.mean(losses[:3])
    assert (tmp_path / "sft" / "model.safetensors").is_file() and (tmp_path / "sft" / "training_log.json").is_file()
    assert "# TimeWarp SFT" in (tmp_path / "sft" / "README.md").read_text()


class _Interrupt(Exception):
    pass


class _CrashAfterSave(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise _Interrupt


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_resume_continues_like_an_uninterrupted_run(tmp_path, tiny, corpus, preferences, lora):
    """Crash after the first checkpoint, resume: the same weights as an uninterrupted run,
    for a LoRA adapter and for full weights (which transformers saves under other key names
    than the model's modules have, so a plain state-dict load would restore nothing)."""
    recipe = DPORecipe.cpu_test(max_steps=3, learning_rate=1e-3, save_steps=2, lora=SMALL_LORA if lora else None)
    weights = "adapter_model.safetensors" if lora else "model.safetensors"
    straight = train_dpo(tiny, preferences, corpus, recipe, tmp_path / "straight")

    interrupted = tmp_path / "interrupted"
    with pytest.raises(_Interrupt):
        train_dpo(tiny, preferences, corpus, recipe, interrupted, callbacks=[_CrashAfterSave(2)])
    assert (interrupted / "checkpoint-2").is_dir() and not (interrupted / weights).exists()
    resumed = train_dpo(tiny, preferences, corpus, recipe, interrupted)

    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("checkpoint-2")
    assert [entry["step"] for entry in resumed.history] == [1, 2, 3]
    assert resumed.history[-1]["loss"] == pytest.approx(straight.history[-1]["loss"], rel=1e-5, abs=1e-6)
    assert resumed.history[-1]["rewards/margins"] == pytest.approx(straight.history[-1]["rewards/margins"], abs=1e-5)
    from safetensors.torch import load_file

    a = load_file(tmp_path / "straight" / weights)
    b = load_file(interrupted / weights)
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)

    # Without resume the same folder trains from scratch (and reuses the stored reference).
    again = train_dpo(tiny, preferences, corpus, recipe.replace(max_steps=1), interrupted, resume=False)
    assert again.resumed_from is None and [entry["step"] for entry in again.history] == [1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_deepspeed_zero2_single_process(tmp_path, tiny, corpus, preferences):
    """ZeRO-2 DPO in one CPU process (a fresh interpreter: DeepSpeed initialises
    torch.distributed for the whole process). The first run ever JIT-compiles DeepSpeed's
    shared-memory comm op (~50 s here; cached in ~/.cache/torch_extensions afterwards)."""
    pytest.importorskip("deepspeed")
    script = textwrap.dedent(
        f"""
        import json, math
        from timewarp.data.corpus import VideoCorpus
        from timewarp.generation.datasets import PreferenceDataset
        from timewarp.generation.template import TemplateGenerator
        from timewarp.training.config import DPORecipe, LoraRecipe
        from timewarp.training.dpo import train_dpo

        corpus = VideoCorpus.read({str(corpus.root)!r})
        pairs = TemplateGenerator().training_text(corpus.videos, 3).preferences
        recipe = DPORecipe.cpu_test(
            max_steps=2, learning_rate=1e-3, save_steps=2, lora=LoraRecipe(r=8, alpha=16),
            deepspeed={str(REPO_ROOT / "configs/deepspeed/zero2.json")!r},
        )
        data = PreferenceDataset(pairs, str(corpus.root))
        result = train_dpo({tiny!r}, data, corpus, recipe, {str(tmp_path / "ds")!r})
        print("LOSSES", json.dumps([e["loss"] for e in result.history]))
        """
    )
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
    }
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-4000:]
    losses = json.loads(done.stdout.split("LOSSES", 1)[1])
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert (tmp_path / "ds" / "checkpoint-2" / "global_step2").is_dir()  # a DeepSpeed checkpoint
    assert (tmp_path / "ds" / "adapter_model.safetensors").is_file()


# -- multi-GPU launch ------------------------------------------------------------------------


def test_launch_decisions_and_command():
    assert not in_distributed_launch({})
    assert in_distributed_launch({"LOCAL_RANK": "0"}) and in_distributed_launch({"WORLD_SIZE": "4"})
    assert not in_distributed_launch({"WORLD_SIZE": "1"})
    assert should_relaunch(4, {}) and not should_relaunch(1, {}) and not should_relaunch(0, {})
    assert not should_relaunch(8, {"LOCAL_RANK": "3", "WORLD_SIZE": "8"})
    assert torchrun_command(4, "/tmp/call.pkl", python="/venv/bin/python") == [
        "/venv/bin/python",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=4",
        "-m",
        "timewarp.training.launch",
        "/tmp/call.pkl",
    ]
    with pytest.raises(ValueError):
        torchrun_command(0, "x")
    assert run_training(_add, a=2, b=3) == 5  # no GPUs here: runs in-process


def _add(a: int, b: int) -> int:
    return a + b


def test_stored_reference_values_are_reused_only_for_the_same_pairs(tmp_path):
    rows = [{"id": "a", "video_id": "v", "prompt": "Q?", "chosen": "yes", "rejected": "no"}]
    path = save_reference_logps(tmp_path / "ref.json", with_reference_logps(rows, [(-1.5, -2.5)]), key={"m": 1})
    loaded = load_reference_logps(path, rows, key={"m": 1})
    assert loaded is not None and (loaded[0][REF_CHOSEN], loaded[0][REF_REJECTED]) == (-1.5, -2.5)
    assert load_reference_logps(path, rows, key={"m": 2}) is None  # other model / frames
    assert load_reference_logps(path, [{**rows[0], "chosen": "yes!"}], key={"m": 1}) is None  # edited pair
    assert load_reference_logps(tmp_path / "missing.json", rows, key={"m": 1}) is None

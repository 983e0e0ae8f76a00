"""DPO and SFT training of the chat video-LLM families (LLaVA-OneVision, Video-LLaVA,
InternVL, VideoLLaMA3) on tiny random-weight checkpoints (CPU, offline): per family, the
training checks ``test_training_qwen2_vl.py`` makes for Qwen2-VL. The data fixtures (4
generated videos of 4 frames, 12 preference pairs, 12 SFT examples) come from that file."""

from __future__ import annotations

import math
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("peft")

# Shared data fixtures and helpers (fixtures must be imported by name to be found here).
from test_training_qwen2_vl import (  # noqa: E402, F401
    check_stored_reference_matches_live,
    # Collected here too, so they run once per family with this module's `tiny` fixture:
    test_deepspeed_zero2_single_process,
    test_resume_continues_like_an_uninterrupted_run,
    SMALL_LORA,
    _losses,
    corpus,
    preferences,
    sft_examples,
    training_text,
)

from timewarp.models.registry import family_by_name  # noqa: E402
from timewarp.training.collator import FrameSource, VideoPreferenceCollator, preference_rows  # noqa: E402
from timewarp.training.config import LANGUAGE_MODEL_PROJECTIONS, DPORecipe, SFTRecipe  # noqa: E402
from timewarp.training.dpo import REFERENCE_FILE, train_dpo  # noqa: E402
from timewarp.training.sft import train_sft  # noqa: E402

FAMILY_NAMES = ("llava_onevision", "video_llava", "internvl", "video_llama_3")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One intra-op thread: these models are too small to gain from more, and when other
    processes share the cores, OpenMP threads wait on each other (on 2 shared cores this
    file took 90-155 s with 2 threads, 33 s with 1). Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def family(request):
    """The registered family adapter, or a skip saying why it cannot run here."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    try:
        adapter = family_by_name(request.param)
    except KeyError as error:
        pytest.skip(str(error))
    missing = [t for t in adapter.model_types if t not in CONFIG_MAPPING_NAMES]
    if missing:
        pytest.skip(f"this transformers has no model type(s) {missing}")
    return adapter


@pytest.fixture(scope="module")
def tiny(family, tmp_path_factory) -> str:
    return str(family.make_tiny(tmp_path_factory.mktemp(f"tiny-{family.name}"), seed=0))


# -- parameter groups ------------------------------------------------------------------------


def _in(name: str, module: str) -> bool:
    return f".{module}." in f".{name}"


def _is_language_model(family, name: str) -> bool:
    return _in(name, family.language_model_module) or name.startswith("lm_head.")


def _is_projector(family, name: str) -> bool:
    return any(_in(name, module) for module in family.projector_modules)


def _is_vision_tower(family, name: str) -> bool:
    return _in(name, family.vision_tower_module) and not _is_projector(family, name)


def _changed(before: dict, after: dict) -> set[str]:
    return {key for key, value in before.items() if not torch.equal(value, after[key])}


def _assert_trained_parts(family, changed: set[str]) -> None:
    """The language model and the projector (own learning rate) train; the vision tower does not."""
    assert any(_is_language_model(family, k) for k in changed)
    assert any(_is_projector(family, k) for k in changed)
    assert not any(_is_vision_tower(family, k) for k in changed)


# -- DPO -------------------------------------------------------------------------------------


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_dpo_few_steps(tmp_path, family, tiny, corpus, preferences, lora):
    recipe = DPORecipe.cpu_test(
        max_steps=2, learning_rate=1e-3, warmup_ratio=0.0, save_steps=100, lora=SMALL_LORA if lora else None
    )
    out = tmp_path / "dpo"
    result = train_dpo(tiny, preferences, corpus, recipe, out)

    assert [entry["step"] for entry in result.history] == [1, 2]
    assert all(math.isfinite(loss) for loss in _losses(result))
    # Step 1 scores the untrained policy, which is the reference.
    assert result.history[0]["loss"] == pytest.approx(math.log(2), abs=1e-3)
    assert result.history[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-3)
    assert abs(result.history[1]["rewards/chosen"]) > 1e-3  # step 2 scores the updated policy
    assert (out / REFERENCE_FILE).is_file() and (out / "training_log.json").is_file()
    assert f"family `{family.name}`" in (out / "README.md").read_text()

    base, _ = family.load(tiny)
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    if lora:
        from peft import PeftModel
        from safetensors.torch import load_file

        assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
        # LoRA adapts every projection of the language model and nothing else.
        adapted = {k.split(".lora_")[0] for k in load_file(out / "adapter_model.safetensors") if ".lora_" in k}
        assert adapted and all(_in(name, family.language_model_module) for name in adapted)
        assert {name.rsplit(".", 1)[-1] for name in adapted} == set(LANGUAGE_MODEL_PROJECTIONS)
        tuned = PeftModel.from_pretrained(base, out).merge_and_unload()
    else:
        assert (out / "model.safetensors").is_file()
        tuned, _ = family.load(str(out))
    _assert_trained_parts(family, _changed(base_state, tuned.state_dict()))


def _with_language_model_std(family, tiny: str, out: Path, std: float) -> str:
    """A copy of ``tiny`` whose language model's weight matrices are redrawn with ``std``."""
    model, processor = family.load(tiny, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 2 and _is_language_model(family, name):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return str(out)


def test_dpo_reward_margin_rises(tmp_path, family, tiny, corpus, preferences):
    """12 pairs, batch 2: epoch 2 sees the pairs again; with a high learning rate the policy
    now prefers the chosen answers.

    As in the Qwen2-VL test, the language model's weights have std 0.1. The families' tiny
    checkpoints draw them with transformers' default 0.02 (a near-uniform next-token
    distribution): there an Adam step at this learning rate is half a weight's typical size,
    and InternVL's and VideoLLaMA3's margins collapse again in epoch 2 (mean of the last 6
    steps ~0.1 and ~0.0), a property of those random weights, not of the training code."""
    model = _with_language_model_std(family, tiny, tmp_path / "lm-std-0.1", 0.1)
    recipe = DPORecipe.cpu_test(
        max_steps=12,
        learning_rate=1e-2,
        lora=SMALL_LORA,
        save_steps=100,
        warmup_ratio=0.0,
        lr_scheduler_type="constant",
    )
    result = train_dpo(model, preferences, corpus, recipe, tmp_path / "dpo")
    margins = [entry["rewards/margins"] for entry in result.history]
    assert len(margins) == 12
    assert np.mean(margins[6:]) > np.mean(margins[:6]) + 0.3
    assert np.mean(margins[6:]) > 0.5
    assert np.mean(_losses(result)[6:]) < math.log(2)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_precomputed_reference_equals_live_reference(tmp_path, family, tiny, corpus, preferences, lora):
    model, processor = family.load(tiny)
    collator = VideoPreferenceCollator(family, processor, FrameSource(corpus, 4))
    rows = preference_rows(preferences)[:4]
    recipe = DPORecipe.cpu_test(lora=SMALL_LORA if lora else None, precompute_ref_log_probs=False)
    check_stored_reference_matches_live(family, tiny, model, processor, collator, rows, recipe, tmp_path, lora)


# -- SFT -------------------------------------------------------------------------------------


def test_sft_runs(tmp_path, family, tiny, corpus, sft_examples):
    recipe = SFTRecipe.cpu_test(max_steps=6, learning_rate=3e-3, lora=None, save_steps=100, warmup_ratio=0.0)
    out = tmp_path / "sft"
    result = train_sft(tiny, sft_examples, corpus, recipe, out)
    losses = _losses(result)
    assert len(losses) == 6 and all(math.isfinite(loss) for loss in losses)
    assert np.mean(losses[3:]) < np.mean(losses[:3])
    assert (out / "model.safetensors").is_file() and (out / "training_log.json").is_file()
    assert "# TimeWarp SFT" in (out / "README.md").read_text()

    base, _ = family.load(tiny)
    tuned, _ = family.load(str(out))
    _assert_trained_parts(family, _changed(base.state_dict(), tuned.state_dict()))


def test_full_fine_tuning_freezes_towers_the_family_never_feeds(tmp_path):
    from timewarp.models.registry import family_by_name
    from timewarp.training.common import configure_trainable
    from timewarp.training.config import DPORecipe

    family = family_by_name("video_llava")
    model, _ = family.load(str(family.make_tiny(tmp_path / "tiny", seed=0)))
    configure_trainable(family, model, DPORecipe.cpu_test(lora=None, train_vision_tower=True))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(".image_tower." in f".{name}" for name in trainable)
    assert any(".video_tower." in f".{name}" for name in trainable)

"""Crash-safe resume of DPO, SFT and the continued-SFT control (tiny Qwen2-VL, CPU):
a run interrupted by a crash, a SIGKILL, a half-written or damaged checkpoint or a full
disk, then resumed, ends with the weights of an uninterrupted run; a folder of another run
is refused. Per-family full and LoRA resume: ``test_resume_continues_like_an_uninterrupted_run``
(``test_training_qwen2_vl.py``, collected per family by ``test_training_families.py``)."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from safetensors.torch import load_file  # noqa: E402

# Shared data fixtures (imported by name to be found here) and the one-thread set-up.
from test_training_families import _one_torch_thread  # noqa: E402, F401
from test_training_qwen2_vl import (  # noqa: E402, F401
    _CrashAfterSave,
    _Interrupt,
    corpus,
    preferences,
    sft_examples,
    tiny,
    training_text,
)

from timewarp.models.qwen2_vl import family  # noqa: E402
from timewarp.training.checkpoints import COMPLETE_MARKER, checkpoint_problem  # noqa: E402
from timewarp.training.config import DPORecipe, LoraRecipe, SFTRecipe, continued_sft_recipe  # noqa: E402
from timewarp.training.dpo import train_dpo  # noqa: E402
from timewarp.training.sft import train_sft  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Full fine-tuning, 4 steps, a checkpoint every 2.
DPO_RECIPE = DPORecipe.cpu_test(max_steps=4, learning_rate=1e-3, save_steps=2, lora=None)
WEIGHTS = "model.safetensors"


def _assert_same_tensors(a: dict, b: dict, atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=atol), key


def _assert_same_weights(folder: Path, reference: Path, weights: str = WEIGHTS) -> None:
    _assert_same_tensors(load_file(folder / weights), load_file(reference / weights))


@pytest.fixture(scope="module")
def straight_dpo(tiny, corpus, preferences, tmp_path_factory) -> Path:
    """An uninterrupted run of ``DPO_RECIPE``."""
    out = tmp_path_factory.mktemp("straight-dpo")
    train_dpo(tiny, preferences, corpus, DPO_RECIPE, out)
    return out


@pytest.fixture(scope="module")
def crashed_after_last_save(tiny, corpus, preferences, tmp_path_factory) -> Path:
    """A run of ``DPO_RECIPE`` that crashed right after saving checkpoint-4 (its last step),
    before writing the final model: complete checkpoints 2 and 4."""
    out = tmp_path_factory.mktemp("crashed-dpo")
    with pytest.raises(_Interrupt):
        train_dpo(tiny, preferences, corpus, DPO_RECIPE, out, callbacks=[_CrashAfterSave(4)])
    assert not (out / WEIGHTS).exists()
    return out


def _copy(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


def _skip_warnings(caplog) -> list[str]:
    messages = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    return [message for message in messages if "skipping checkpoint" in message]


# -- optimizer, scheduler, RNG and data position ---------------------------------------------


#: (training function, data fixture, recipe, weights file). DPO (TRL switches dropout off)
#: with full weights; LoRA SFT with adapter dropout, whose masks come from the restored RNG.
RESTORE_CASES = {
    "dpo-full": (train_dpo, "preferences", DPO_RECIPE, WEIGHTS),
    "sft-lora-dropout": (
        train_sft,
        "sft_examples",
        SFTRecipe.cpu_test(max_steps=4, learning_rate=1e-3, save_steps=2, lora=LoraRecipe(r=8, alpha=16, dropout=0.3)),
        "adapter_model.safetensors",
    ),
}


@pytest.mark.parametrize("case", list(RESTORE_CASES))
def test_resume_restores_optimizer_scheduler_rng_and_data_position(tmp_path, request, tiny, corpus, case):
    """Interrupted after checkpoint-2 and resumed: checkpoint-4 (written after the resume)
    holds the same weights, Adam moments, learning-rate schedule, RNG states and log as an
    uninterrupted run's, and steps 3 and 4 saw the same batches (same losses)."""
    train, data_fixture, recipe, weights = RESTORE_CASES[case]
    data = request.getfixturevalue(data_fixture)
    straight = tmp_path / "straight"
    train(tiny, data, corpus, recipe, straight)
    out = tmp_path / "interrupted"
    with pytest.raises(_Interrupt):
        train(tiny, data, corpus, recipe, out, callbacks=[_CrashAfterSave(2)])
    resumed = train(tiny, data, corpus, recipe, out)
    assert resumed.resumed_from == str(out / "checkpoint-2")

    _assert_same_weights(out, straight, weights)
    ours, theirs = out / "checkpoint-4", straight / "checkpoint-4"
    _assert_same_weights(ours, theirs, weights)
    a, b = (torch.load(folder / "optimizer.pt", weights_only=True) for folder in (ours, theirs))
    assert a["param_groups"] == b["param_groups"] and a["state"].keys() == b["state"].keys()
    for index, state in a["state"].items():
        other = b["state"][index]
        assert state.pop("step") == other.pop("step") == 4
        _assert_same_tensors(state, other)
    schedules = [torch.load(folder / "scheduler.pt", weights_only=True) for folder in (ours, theirs)]
    assert schedules[0] == schedules[1]
    rng_a, rng_b = (torch.load(folder / "rng_state.pth", weights_only=False) for folder in (ours, theirs))
    assert torch.equal(rng_a["cpu"], rng_b["cpu"]) and rng_a["python"] == rng_b["python"]
    assert all((x == y).all() if hasattr(x, "shape") else x == y for x, y in zip(rng_a["numpy"], rng_b["numpy"]))
    log_a, log_b = (json.loads((folder / "trainer_state.json").read_text())["log_history"] for folder in (ours, theirs))
    assert [e["step"] for e in log_a] == [e["step"] for e in log_b] == [1, 2, 3, 4]
    for x, y in zip(log_a, log_b):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5)
        assert x["learning_rate"] == pytest.approx(y["learning_rate"])


# -- half-written, damaged and failed saves --------------------------------------------------


def _truncate(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def _damage_header(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.write(b"\xff" * 8)


DAMAGE = {
    # killed while the Trainer wrote the checkpoint: the marker is never written
    "no-marker": (lambda folder: (folder / COMPLETE_MARKER).unlink(), "no timewarp_checkpoint.json"),
    "truncated-weights": (lambda folder: _truncate(folder / WEIGHTS), "model.safetensors has .* bytes"),
    "truncated-optimizer": (lambda folder: _truncate(folder / "optimizer.pt"), "optimizer.pt has .* bytes"),
    "damaged-header": (lambda folder: _damage_header(folder / WEIGHTS), "no valid safetensors header"),
    "unreadable-marker": (lambda folder: _truncate(folder / COMPLETE_MARKER), "timewarp_checkpoint.json is unreadable"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_half_written_newest_checkpoint_is_skipped(
    tmp_path, caplog, tiny, corpus, preferences, straight_dpo, crashed_after_last_save, damage
):
    out = _copy(crashed_after_last_save, tmp_path / "dpo")
    spoil, reason = DAMAGE[damage]
    spoil(out / "checkpoint-4")
    assert checkpoint_problem(out / "checkpoint-2") is None
    with caplog.at_level(logging.WARNING, logger="timewarp.training.checkpoints"):
        resumed = train_dpo(tiny, preferences, corpus, DPO_RECIPE, out)
    warnings = _skip_warnings(caplog)
    assert len(warnings) == 1 and str(out / "checkpoint-4") in warnings[0]
    assert re.search(reason, warnings[0]), warnings[0]
    assert resumed.resumed_from == str(out / "checkpoint-2")
    assert [entry["step"] for entry in resumed.history] == [1, 2, 3, 4]
    _assert_same_weights(out, straight_dpo)
    assert checkpoint_problem(out / "checkpoint-4") is None  # saved again, whole


def _out_of_disk_writing_the_optimizer(monkeypatch) -> None:
    """``torch.save`` (the Trainer's writer of optimizer.pt) fills the disk halfway through
    checkpoint-4's optimizer state, as a real ENOSPC leaves a partial file."""
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and str(f).endswith("checkpoint-4/optimizer.pt"):
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            Path(f).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def _killed_before_the_marker(monkeypatch) -> None:
    """The process dies after the Trainer wrote checkpoint-4, before it is marked complete
    (here HF's own rotation would already have deleted checkpoint-2)."""
    from timewarp.training import checkpoints

    real_mark = checkpoints.mark_complete

    def mark(folder, run, step):
        if step == 4:
            raise _Interrupt
        return real_mark(folder, run, step)

    monkeypatch.setattr(checkpoints, "mark_complete", mark)


@pytest.mark.parametrize(
    ("failure", "raises"),
    [(_out_of_disk_writing_the_optimizer, OSError), (_killed_before_the_marker, _Interrupt)],
    ids=["out-of-disk", "killed-before-marker"],
)
def test_a_failed_save_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch, caplog, tiny, corpus, preferences, straight_dpo, failure, raises
):
    """With ``save_total_limit: 1`` older checkpoints rotate out only once a newer one is
    complete: a save that fails leaves checkpoint-2 to resume from."""
    recipe = DPO_RECIPE.replace(save_total_limit=1)  # bookkeeping: resumes a run of DPO_RECIPE
    out = tmp_path / "dpo"
    with monkeypatch.context() as patch:
        failure(patch)
        with pytest.raises(raises) as raised:
            train_dpo(tiny, preferences, corpus, recipe, out)
    if raises is OSError:
        assert raised.value.errno == errno.ENOSPC
        assert str(out / "checkpoint-4") in str(raised.value) and "Free space" in str(raised.value)
    assert checkpoint_problem(out / "checkpoint-2") is None
    assert checkpoint_problem(out / "checkpoint-4") is not None

    with caplog.at_level(logging.WARNING, logger="timewarp.training.checkpoints"):
        resumed = train_dpo(tiny, preferences, corpus, recipe, out)
    assert resumed.resumed_from == str(out / "checkpoint-2")
    assert any(str(out / "checkpoint-4") in message for message in _skip_warnings(caplog))
    _assert_same_weights(out, straight_dpo)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4"]  # rotated once complete


# -- a folder of another run -----------------------------------------------------------------


def test_a_folder_of_another_run_is_refused_untouched(
    tmp_path, tiny, corpus, preferences, sft_examples, crashed_after_last_save
):
    out = _copy(crashed_after_last_save, tmp_path / "dpo")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    other_rate = DPO_RECIPE.replace(learning_rate=2e-3)
    with pytest.raises(ValueError, match="another training run") as raised:
        train_dpo(tiny, preferences, corpus, other_rate, out)
    message = str(raised.value)
    assert "trained with learning_rate 0.001" in message and "asks for learning_rate 0.002" in message
    assert "checkpoint_root" in message and str(out) in message

    other_base = str(family.make_tiny(tmp_path / "other-base", seed=1))
    with pytest.raises(ValueError, match="another training run") as raised:
        train_dpo(other_base, preferences, corpus, DPO_RECIPE, out)
    assert f"base model {tiny} (weights" in str(raised.value)
    assert f"base model {other_base} (weights" in str(raised.value)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing written

    with pytest.raises(ValueError, match="another training run"):  # an SFT run in a DPO folder
        train_sft(tiny, sft_examples, corpus, SFTRecipe.cpu_test(max_steps=4, save_steps=2, lora=None), out)

    # The same base model copied to another folder (as an artifact store does) is the same run.
    copy = shutil.copytree(tiny, tmp_path / "same-base-elsewhere")
    resumed = train_dpo(str(copy), preferences, corpus, DPO_RECIPE, out)
    assert resumed.resumed_from == str(out / "checkpoint-4")


# -- SIGKILL of a training process -----------------------------------------------------------

#: Trains SFT in a child process that stalls (a minute per step) once past its first
#: checkpoint, so the parent can SIGKILL it mid-run whenever it gets there. Argument: JSON
#: {model, corpus, recipe, out}.
_SFT_CHILD = textwrap.dedent(
    """
    import json, sys, time
    import torch
    torch.set_num_threads(1)
    from transformers import TrainerCallback
    from timewarp.data.corpus import VideoCorpus
    from timewarp.generation.datasets import SFTDataset
    from timewarp.generation.template import TemplateGenerator
    from timewarp.training.config import SFTRecipe
    from timewarp.training.sft import train_sft

    args = json.loads(sys.argv[1])
    recipe = SFTRecipe.from_dict(args["recipe"])

    class StallAfterFirstCheckpoint(TrainerCallback):
        def on_step_end(self, arguments, state, control, **keywords):
            if state.global_step > recipe.save_steps:
                time.sleep(60)

    corpus = VideoCorpus.read(args["corpus"])
    examples = SFTDataset(TemplateGenerator().training_text(corpus.videos, 3).sft, media_root=str(corpus.root))
    train_sft(args["model"], examples, corpus, recipe, args["out"], callbacks=[StallAfterFirstCheckpoint()])
    """
)


def _start_sft_child(model: str, corpus, recipe: SFTRecipe, out: Path, log: Path) -> subprocess.Popen:
    args = {"model": model, "corpus": str(corpus.root), "recipe": recipe.to_dict(), "out": str(out)}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, "-c", _SFT_CHILD, json.dumps(args)], cwd=REPO_ROOT, env=env, stdout=output, stderr=output
        )


def _sigkill_once_checkpointed(child: subprocess.Popen, out: Path, log: Path) -> None:
    """SIGKILL ``child`` as soon as ``out/checkpoint-2`` is complete; check it died mid-run."""
    try:
        deadline = time.monotonic() + 180
        first = out / "checkpoint-2"
        while not (first.is_dir() and checkpoint_problem(first) is None):
            assert child.poll() is None, f"training ended before checkpoint-2:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no complete checkpoint-2 within 180 s"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert not (out / WEIGHTS).exists() and not (out / "checkpoint-4").exists()


@pytest.fixture(scope="module")
def sft_model(tiny, corpus, sft_examples, tmp_path_factory) -> str:
    """A full SFT model, the start of the continued-SFT control."""
    out = tmp_path_factory.mktemp("sft-model")
    recipe = SFTRecipe.cpu_test(max_steps=2, learning_rate=1e-3, save_steps=100, lora=None)
    train_sft(tiny, sft_examples, corpus, recipe, out)
    return str(out)


@pytest.mark.parametrize("kind", ["sft", "continued-sft"])
def test_sigkill_during_training_then_resume_ends_like_an_uninterrupted_run(
    tmp_path, tiny, corpus, sft_examples, preferences, kind, request
):
    sft = SFTRecipe.cpu_test(max_steps=4, learning_rate=1e-3, save_steps=2, lora=None)
    if kind == "sft":
        model, recipe = tiny, sft
    else:  # the control arm: SFT continued from the SFT model with DPO's budget (4 steps)
        model = request.getfixturevalue("sft_model")
        recipe = continued_sft_recipe(sft, DPO_RECIPE, len(preferences.pairs))
        assert recipe.max_steps == 4 and recipe.learning_rate == DPO_RECIPE.learning_rate
    out, log = tmp_path / "killed", tmp_path / "child.log"
    child = _start_sft_child(model, corpus, recipe, out, log)
    straight = train_sft(model, sft_examples, corpus, recipe, tmp_path / "straight")  # while the child starts
    _sigkill_once_checkpointed(child, out, log)
    resumed = train_sft(model, sft_examples, corpus, recipe, out)
    assert resumed.resumed_from == str(out / "checkpoint-2")
    assert [entry["step"] for entry in resumed.history] == [entry["step"] for entry in straight.history] == [1, 2, 3, 4]
    _assert_same_weights(out, tmp_path / "straight")

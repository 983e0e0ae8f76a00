"""Multi-process training on the CPU: two processes over gloo (torchrun, through
``run_training``) train like one process with the same global batch, for DPO and SFT, with
plain DDP, ZeRO-2 and ZeRO-3; the reference pass is split between the processes.

Like for like: one process with per-device batch 2 against two with batch 1, same seed and
steps. The Trainer's sampler draws one permutation from the seed whatever the number of
processes; accelerate deals its batches of one out in turn (rank 0 the 1st, 3rd, ...
sample), so each step trains on the same two samples. The recipes have no dropout (LoRA
dropout 0 for DPO, full fine-tuning for SFT), so no random numbers differ. What remains is fp32 rounding in another order (a
gradient summed within one batch or across processes, sequences padded to a longer one or
not). Measured over three steps: DPO losses within 1.9e-6 relative and reward margins
within 2.3e-6 absolute (they start at 0, end at 0.047) under DDP, ZeRO-2 and ZeRO-3 alike;
SFT losses within 1.6e-7 relative. The tests allow 1e-4 for both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from distributed_calls import (  # noqa: E402
    fail_on_rank_one,
    kill_rank_one,
    train_dpo_counting_reference,
    zero3_load_then_train_dpo,
)
from test_training_qwen2_vl import corpus, preferences, sft_examples, tiny, training_text  # noqa: E402, F401

from timewarp.training.config import DPORecipe, LoraRecipe, SFTRecipe  # noqa: E402
from timewarp.training.dpo import REFERENCE_FILE, train_dpo  # noqa: E402
from timewarp.training.launch import (  # noqa: E402
    NPROC_VARIABLE,
    TrainingProcessError,
    import_roots,
    launch_environment,
    process_count,
    run_training,
    should_relaunch,
)
from timewarp.training.reference import REF_CHOSEN, REF_REJECTED, load_reference_logps, shard_bounds  # noqa: E402
from timewarp.training.sft import train_sft  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
#: How close the losses (relative) and DPO reward margins (absolute) of one and two processes
#: must be (see the module docstring).
SAME_LOSS = 1e-4
SAME_MARGIN = 1e-4


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One intra-op thread in this process, as torchrun gives each launched one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _dpo_recipe(**changes) -> DPORecipe:
    """LoRA without dropout (and the projector trained in full, PEFT's modules_to_save), 3
    steps, reference batches of 2 pairs."""
    lora = LoraRecipe(r=8, alpha=16, dropout=0.0)
    values = {"max_steps": 3, "learning_rate": 1e-3, "save_steps": 100, "lora": lora, "ref_batch_size": 2}
    return DPORecipe.cpu_test(**{**values, **changes})


@pytest.fixture(scope="module")
def one_process_dpo(tmp_path_factory, tiny, corpus, preferences):
    """DPO in this process, per-device batch 2."""
    out = tmp_path_factory.mktemp("dpo-one")
    return train_dpo(tiny, preferences, corpus, _dpo_recipe(), out), out


def _assert_same_reference_values(folder: Path, one_folder: Path) -> None:
    """The stored reference log-probs of the same pairs (keyed by pair) are equal."""
    ours, theirs = (json.loads((f / REFERENCE_FILE).read_text())["values"] for f in (folder, one_folder))
    assert ours.keys() == theirs.keys()
    assert np.allclose([ours[k] for k in theirs], list(theirs.values()), rtol=1e-6, atol=0)


def _assert_trains_like_one_process(result, one_result, *, dpo: bool = True) -> None:
    assert [entry["step"] for entry in result.history] == [1, 2, 3]
    assert _column(result, "loss") == pytest.approx(_column(one_result, "loss"), rel=SAME_LOSS)
    if dpo:  # margins start at 0: compared absolutely
        margins = _column(one_result, "rewards/margins")
        assert _column(result, "rewards/margins") == pytest.approx(margins, abs=SAME_MARGIN)
        assert abs(result.history[-1]["rewards/margins"]) > 100 * SAME_MARGIN  # it did train


def _column(result, key: str) -> list[float]:
    return [entry[key] for entry in result.history]


# -- launcher decisions (pure) ---------------------------------------------------------------


def test_process_count_and_environment(tmp_path):
    assert process_count(0, {}) == 1 and process_count(4, {}) == 4
    assert process_count(0, {}, requested=2) == 2  # CPU processes: any number
    assert process_count(4, {NPROC_VARIABLE: "2"}, requested=3) == 2  # the variable wins
    assert process_count(0, {NPROC_VARIABLE: "1"}, requested=2) == 1
    with pytest.raises(ValueError, match="only 2 GPUs are visible"):
        process_count(2, {}, requested=3)
    with pytest.raises(ValueError, match=f"{NPROC_VARIABLE}='two'.*at least 1"):
        process_count(0, {NPROC_VARIABLE: "two"})
    with pytest.raises(ValueError, match="num_processes must be at least 1"):
        DPORecipe(num_processes=0)

    assert should_relaunch(0, {NPROC_VARIABLE: "2"}) and should_relaunch(0, {}, requested=2)
    assert not should_relaunch(0, {}) and not should_relaunch(1, {}, requested=1)
    assert not should_relaunch(0, {NPROC_VARIABLE: "2", "LOCAL_RANK": "1", "WORLD_SIZE": "2"})

    env = launch_environment({"PYTHONPATH": "/elsewhere", "DS_ACCELERATOR": "cuda"}, cpu=True, roots=["/a", "/b"])
    assert env["PYTHONPATH"] == os.pathsep.join(["/a", "/b", "/elsewhere"])
    assert env["DS_ACCELERATOR"] == "cpu" and "ACCELERATE_USE_CPU" not in env  # which would rule DeepSpeed out
    assert "DS_ACCELERATOR" not in launch_environment({}, cpu=False, roots=["/a"])
    # The launched processes import the training function's module (here tests/) and timewarp.
    assert import_roots(fail_on_rank_one) == [str(REPO_ROOT / "tests"), str(REPO_ROOT)]

    recipe = DPORecipe.cpu_test(num_processes=2)
    assert DPORecipe.from_dict(recipe.to_dict()) == recipe
    assert DPORecipe.from_yaml(recipe.to_yaml(tmp_path / "recipe.yaml")).num_processes == 2


def test_reference_shares_are_contiguous_and_cover_every_row():
    assert [shard_bounds(12, rank, 2) for rank in range(2)] == [(0, 6), (6, 12)]
    assert [shard_bounds(5, rank, 3) for rank in range(3)] == [(0, 2), (2, 4), (4, 5)]
    assert shard_bounds(1, 1, 2) == (1, 1)  # fewer rows than processes: an empty share


def test_a_failing_rank_surfaces_its_error():
    """The caller sees the failing rank's own exception and traceback; a killed rank (no
    exception) is reported as such."""
    with pytest.raises(TrainingProcessError, match=r"(?s)rank 1 of 2 failed.*ValueError: rank 1 has no data"):
        run_training(fail_on_rank_one, recipe=DPORecipe.cpu_test(num_processes=2))
    with pytest.raises(TrainingProcessError, match="no process reported an exception"):
        run_training(kill_rank_one, recipe=DPORecipe.cpu_test(num_processes=2))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="need the recipe's use_cpu: true"):
            run_training(fail_on_rank_one, recipe=DPORecipe(num_processes=2))


# -- DDP over gloo ---------------------------------------------------------------------------


def test_dpo_in_two_processes_trains_like_one(tmp_path, tiny, corpus, preferences, one_process_dpo):
    one_result, one_out = one_process_dpo
    out = tmp_path / "dpo-two"
    result, pairs = run_training(
        train_dpo_counting_reference,
        model_path=tiny, preferences=preferences, corpus=corpus,
        recipe=_dpo_recipe(per_device_train_batch_size=1, num_processes=2), output_dir=out,
    )
    _assert_trains_like_one_process(result, one_result)
    # Each process ran the reference model on its half of the 12 pairs only; the gathered
    # values (written by rank 0) are the one-process values, same batches of 2 pairs.
    assert pairs == [6, 6] and len(preferences.pairs) == 12
    _assert_same_reference_values(out, one_out)
    assert (out / "adapter_model.safetensors").is_file() and (out / "training_log.json").is_file()


def test_sft_in_two_processes_trains_like_one(tmp_path, monkeypatch, tiny, corpus, sft_examples):
    recipe = SFTRecipe.cpu_test(max_steps=3, learning_rate=3e-3, save_steps=100, lora=None)
    one = train_sft(tiny, sft_examples, corpus, recipe, tmp_path / "sft-one")
    monkeypatch.setenv(NPROC_VARIABLE, "2")  # the variable alone asks for two processes
    two = run_training(
        train_sft, model_path=tiny, examples=sft_examples, corpus=corpus,
        recipe=recipe.replace(per_device_train_batch_size=1), output_dir=tmp_path / "sft-two",
    )
    _assert_trains_like_one_process(two, one, dpo=False)
    assert _column(two, "loss")[-1] < _column(two, "loss")[0] - 0.1  # it did train


# -- DeepSpeed ZeRO on its CPU accelerator ---------------------------------------------------


def test_zero2_in_two_processes_trains_like_one(tmp_path, tiny, corpus, preferences, one_process_dpo):
    pytest.importorskip("deepspeed")
    one_result, _ = one_process_dpo
    out = tmp_path / "zero2"
    recipe = _dpo_recipe(
        per_device_train_batch_size=1, num_processes=2, save_steps=3,
        deepspeed=str(REPO_ROOT / "configs/deepspeed/zero2.json"),
    )
    result, pairs = run_training(
        train_dpo_counting_reference, model_path=tiny, preferences=preferences, corpus=corpus, recipe=recipe,
        output_dir=out,
    )
    _assert_trains_like_one_process(result, one_result)
    assert pairs == [6, 6]
    assert (out / "checkpoint-3" / "global_step3").is_dir()  # DeepSpeed trained (its checkpoint)
    assert (out / "adapter_model.safetensors").is_file()


def test_zero3_loads_partitioned_and_trains_like_one(tmp_path, tiny, corpus, preferences, one_process_dpo):
    """ZeRO-3: each process loads only its half of the weights (deepspeed.zero.Init, so the
    model is never whole in a process), runs the reference pass on the partitioned model in
    step with the other, and trains as one process does."""
    pytest.importorskip("deepspeed")
    one_result, one_out = one_process_dpo
    out = tmp_path / "zero3"
    recipe = _dpo_recipe(
        per_device_train_batch_size=1, num_processes=2, save_steps=3,
        deepspeed=str(REPO_ROOT / "configs/deepspeed/zero3.json"),
    )
    result, pairs, held, uneven = run_training(
        zero3_load_then_train_dpo, model_path=tiny, preferences=preferences, corpus=corpus, recipe=recipe,
        output_dir=out,
    )
    total = held[0]["total"]
    assert all(rank["all_partitioned"] and rank["materialised"] == 0 for rank in held), held
    assert all(rank["total"] == total and rank["local"] == pytest.approx(total / 2, rel=0.01) for rank in held), held
    # Uneven shares (3 and 2 pairs in batches of 2): both processes ran 2 batches, and the
    # values are those one process computes.
    assert uneven["batches"] == [2, 2]
    one_file = one_out / REFERENCE_FILE
    expected = load_reference_logps(one_file, uneven["rows"], key=json.loads(one_file.read_text())["key"])
    assert np.allclose(uneven["values"], [(row[REF_CHOSEN], row[REF_REJECTED]) for row in expected], rtol=1e-5)
    assert pairs == [6, 6]
    _assert_same_reference_values(out, one_out)
    _assert_trains_like_one_process(result, one_result)
    assert (out / "checkpoint-3" / "global_step3").is_dir()
    assert (out / "adapter_model.safetensors").is_file()

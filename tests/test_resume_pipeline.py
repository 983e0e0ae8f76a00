"""Kill-and-resume through the pipeline: a real ``zenml pipeline run timewarp_explicit``
is SIGKILLed (its whole process group) while ``train_dpo`` trains, the same command run
again resumes from the step's last complete checkpoint, and the DPO weights equal those
of an uninterrupted run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from timewarp.training.checkpoints import checkpoint_problem

pytestmark = pytest.mark.pipeline

REPO_ROOT = Path(__file__).resolve().parent.parent
ZENML = str(Path(sys.executable).parent / "zenml")
MAX_STEPS = 12


def _config(tmp_path: Path, name: str, checkpoint_root: Path) -> Path:
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump({"parameters": {
        "sample_videos": 8, "sft_stage": False, "checkpoint_root": str(checkpoint_root), "mcq_per_video": 1,
        "scorers": ["loglik"], "gate_scorer": "loglik", "registered_model_name": "timewarp-resume",
        "recipe_overrides": {"max_steps": MAX_STEPS, "save_steps": 2, "logging_steps": 1},
    }}))
    return config


@pytest.fixture
def stack_env(local_stack, monkeypatch):
    """The isolated store's local stack and project named by environment variables, which
    ZenML reads before the checkout's ``.zen/config.yaml`` (shared by every test session in
    this checkout, so another one may point it at its own store meanwhile)."""
    from zenml.client import Client

    from infra.local_stack import STACK

    client = Client()
    monkeypatch.setenv("ZENML_ACTIVE_STACK_ID", str(client.get_stack(STACK).id))
    monkeypatch.setenv("ZENML_ACTIVE_PROJECT_ID", str(client.get_project("default").id))


def _start(config: Path, log: Path) -> subprocess.Popen:
    """``zenml pipeline run`` in a new session (its own process group), on the isolated
    store conftest set up (``ZENML_CONFIG_PATH`` and the stack are inherited)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ZENML_LOGGING_VERBOSITY": "INFO"}
    with log.open("w") as output:
        return subprocess.Popen(
            [ZENML, "pipeline", "run", "timewarp_explicit", "-c", str(config)],
            cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )


def _finish(process: subprocess.Popen, log: Path) -> str:
    try:
        process.wait(timeout=400)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log.read_text()
    assert process.returncode == 0, output[-4000:]
    return output


def _dpo_checkpoints(checkpoint_root: Path) -> list[Path]:
    """Complete checkpoints of the DPO step's folder(s), by step."""
    found = [p for p in checkpoint_root.glob("dpo-*/checkpoint-*") if checkpoint_problem(p) is None]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _final_weights(checkpoint_root: Path) -> dict:
    from safetensors.torch import load_file

    (folder,) = checkpoint_root.glob("dpo-*")
    return load_file(folder / "model.safetensors")


def test_sigkill_of_a_pipeline_run_then_the_same_command_resumes_dpo(stack_env, tmp_path):
    import torch

    root = tmp_path / "checkpoints"
    config = _config(tmp_path, "run", root)

    started = time.monotonic()
    killed = _start(config, tmp_path / "killed.log")
    try:
        while not _dpo_checkpoints(root):
            assert killed.poll() is None, (tmp_path / "killed.log").read_text()[-4000:]
            assert time.monotonic() - started < 300, "train_dpo wrote no checkpoint within 300 s"
            time.sleep(0.05)
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(timeout=30)
    finally:
        if killed.poll() is None:
            os.killpg(killed.pid, signal.SIGKILL)
            killed.wait()
    assert killed.returncode == -signal.SIGKILL
    kept = _dpo_checkpoints(root)[-1]
    step = int(kept.name.split("-")[1])
    assert step < MAX_STEPS and not (kept.parent / "model.safetensors").exists()  # killed mid-training

    output = _finish(_start(config, tmp_path / "resumed.log"), tmp_path / "resumed.log")
    resumed_from = re.findall(r"resuming DPO from ([^\s\x1b]+)", output)  # (ZenML colours its log)
    assert resumed_from == [str(kept)], output[-4000:]

    from zenml.client import Client
    from zenml.enums import ExecutionStatus

    run, first = Client().list_pipeline_runs(pipeline_name="timewarp_explicit", sort_by="desc:created", size=2).items
    # The killed run stays "running" in the store; the same command is a new run all the same.
    assert first.status == ExecutionStatus.RUNNING and run.status == ExecutionStatus.COMPLETED
    dpo = run.steps["train_dpo"].outputs["dpo_model"][0].load()
    assert dpo.resumed_from == str(kept)
    assert [row["step"] for row in dpo.history] == list(range(1, MAX_STEPS + 1))

    # An uninterrupted run: another checkpoint_root, so train_dpo is not served from the cache.
    other = tmp_path / "uninterrupted"
    _finish(_start(_config(tmp_path, "uninterrupted", other), tmp_path / "straight.log"), tmp_path / "straight.log")
    a, b = _final_weights(root), _final_weights(other)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key

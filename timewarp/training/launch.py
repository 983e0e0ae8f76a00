"""Use every GPU of a machine: re-launch a training function under ``torchrun``.

A pipeline step runs as one process. When it sees more than one GPU and is not itself part
of a distributed launch, :func:`run_training` pickles the call, starts
``python -m torch.distributed.run --standalone --nproc_per_node=N -m timewarp.training.launch
<call file>`` (one process per GPU; the HF Trainer then runs DDP, or DeepSpeed when the
recipe names a config) and returns what rank 0 returned. With one GPU or none it calls the
function in-process.

The decisions and the command are pure functions (:func:`should_relaunch`,
:func:`torchrun_command`) so they can be tested without GPUs.

This module must not import zenml.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "in_distributed_launch",
    "run_training",
    "should_relaunch",
    "torchrun_command",
    "visible_gpu_count",
]

_T = TypeVar("_T")

#: Variables a launcher (torchrun, accelerate, deepspeed, mpirun via accelerate) sets.
_LAUNCH_MARKERS = ("LOCAL_RANK", "TORCHELASTIC_RUN_ID", "ACCELERATE_PROCESS_ID", "OMPI_COMM_WORLD_LOCAL_RANK")


def in_distributed_launch(env: Mapping[str, str]) -> bool:
    """Whether ``env`` belongs to a process started by a distributed launcher."""
    if any(marker in env for marker in _LAUNCH_MARKERS):
        return True
    try:
        return int(env.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def should_relaunch(gpu_count: int, env: Mapping[str, str]) -> bool:
    """Re-launch when several GPUs are visible and we are not already one of N processes."""
    return gpu_count > 1 and not in_distributed_launch(env)


def torchrun_command(
    nproc: int, call_file: str | Path, *, python: str = sys.executable, module: str = "timewarp.training.launch"
) -> list[str]:
    """The command that runs ``call_file``'s pickled call in ``nproc`` processes on this
    machine (``--standalone``: a local rendezvous on a free port)."""
    if nproc < 1:
        raise ValueError(f"nproc must be at least 1, got {nproc}")
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        module,
        str(call_file),
    ]


def visible_gpu_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _result_file(call_file: Path) -> Path:
    return call_file.with_suffix(".result.pkl")


def run_training(function: Callable[..., _T], /, **kwargs: Any) -> _T:
    """``function(**kwargs)``, in ``visible_gpu_count()`` processes when that is more than
    one (and we are not already distributed), else in this process. ``function`` must be
    importable by name (a module-level function) and its arguments and result picklable."""
    gpus = visible_gpu_count()
    if not should_relaunch(gpus, os.environ):
        return function(**kwargs)
    with tempfile.TemporaryDirectory(prefix="timewarp-launch-") as folder:
        call_file = Path(folder) / "call.pkl"
        call_file.write_bytes(pickle.dumps((function, kwargs)))
        subprocess.run(torchrun_command(gpus, call_file), check=True)
        return pickle.loads(_result_file(call_file).read_bytes())


def _main(argv: list[str]) -> None:
    """Entry point of each launched process: run the call; rank 0 writes the result."""
    if len(argv) != 1:
        raise SystemExit("usage: python -m timewarp.training.launch CALL_FILE")
    call_file = Path(argv[0])
    function, kwargs = pickle.loads(call_file.read_bytes())
    result = function(**kwargs)
    if int(os.environ.get("RANK", "0")) == 0:
        _result_file(call_file).write_bytes(pickle.dumps(result))


if __name__ == "__main__":
    _main(sys.argv[1:])

"""Train in several processes: re-launch a training function under ``torchrun``.

A pipeline step runs as one process. :func:`run_training` decides how many processes the
training should run in (:func:`process_count`): ``TIMEWARP_NPROC`` when set, else the
recipe's ``num_processes``, else one per visible GPU. When that is more than one and the
step is not itself part of a distributed launch, it pickles the call, starts
``python -m torch.distributed.run --standalone --nproc_per_node=N -m timewarp.training.launch
<call file>`` and returns what rank 0 returned. Each process trains on its GPU (the HF
Trainer then runs DDP, or DeepSpeed when the recipe names a config); without GPUs, or with
the recipe's ``use_cpu``, the N processes train on the CPU over gloo (DeepSpeed on its CPU
accelerator). With one process it calls the function in-process.

A rank that raises writes its traceback next to the call file; :func:`run_training` raises
:class:`TrainingProcessError` with it, so the caller sees the rank's own message.

The decisions, the command and the environment are pure functions (:func:`process_count`,
:func:`should_relaunch`, :func:`torchrun_command`, :func:`launch_environment`) so they can
be tested without GPUs.

This module must not import zenml.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "NPROC_VARIABLE",
    "TrainingProcessError",
    "import_roots",
    "in_distributed_launch",
    "launch_environment",
    "process_count",
    "run_training",
    "should_relaunch",
    "torchrun_command",
    "visible_gpu_count",
]

_T = TypeVar("_T")

#: Environment variable: how many processes to train in (overrides the recipe's num_processes).
NPROC_VARIABLE = "TIMEWARP_NPROC"

#: Variables a launcher (torchrun, accelerate, deepspeed, mpirun via accelerate) sets.
_LAUNCH_MARKERS = ("LOCAL_RANK", "TORCHELASTIC_RUN_ID", "ACCELERATE_PROCESS_ID", "OMPI_COMM_WORLD_LOCAL_RANK")


class TrainingProcessError(RuntimeError):
    """A process of a multi-process training run failed; the message holds its traceback."""


def in_distributed_launch(env: Mapping[str, str]) -> bool:
    """Whether ``env`` belongs to a process started by a distributed launcher."""
    if any(marker in env for marker in _LAUNCH_MARKERS):
        return True
    try:
        return int(env.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def process_count(gpu_count: int, env: Mapping[str, str], requested: int | None = None) -> int:
    """How many processes to train in: ``TIMEWARP_NPROC`` from ``env`` when set, else
    ``requested`` (the recipe's ``num_processes``), else one per GPU. ``gpu_count`` 0 means
    training on the CPU, where any number of processes may run; on GPUs each process needs
    its own."""
    value = env.get(NPROC_VARIABLE, "").strip()
    if value:
        source, count = f"{NPROC_VARIABLE}={value!r}", int(value) if value.isdigit() else 0
    elif requested is not None:
        source, count = f"num_processes={requested}", requested
    else:
        return max(gpu_count, 1)
    if count < 1:
        raise ValueError(f"{source}: the number of training processes must be a whole number of at least 1")
    if gpu_count and count > gpu_count:
        raise ValueError(
            f"{source} asks for {count} training processes but only {gpu_count} GPUs are visible: "
            f"ask for at most {gpu_count}, or train on the CPU (recipe use_cpu: true)"
        )
    return count


def should_relaunch(gpu_count: int, env: Mapping[str, str], requested: int | None = None) -> bool:
    """Re-launch when the training should run in several processes (:func:`process_count`)
    and we are not already one of them."""
    return not in_distributed_launch(env) and process_count(gpu_count, env, requested) > 1


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


def import_roots(function: Callable[..., Any]) -> list[str]:
    """The folders the launched processes need on their path to import ``function`` (which
    they unpickle by name) and this package, whether installed or not."""
    roots: list[str] = []
    for module_name in (function.__module__, __name__):
        if module_name == "__main__":
            raise ValueError(
                f"{function.__qualname__} is defined in __main__; the launched processes import the "
                "training function by name, so define it in an importable module"
            )
        top = sys.modules[module_name.split(".")[0]]
        if getattr(top, "__file__", None):
            path = Path(top.__file__).resolve()
            root = path.parent.parent if path.name == "__init__.py" else path.parent
        else:  # a namespace package
            root = Path(next(iter(top.__path__))).resolve().parent
        if str(root) not in roots:
            roots.append(str(root))
    return roots


def launch_environment(env: Mapping[str, str], *, cpu: bool, roots: Sequence[str]) -> dict[str, str]:
    """The launched processes' environment: ``env`` with ``roots`` first on ``PYTHONPATH``;
    for a CPU run, DeepSpeed told to use its CPU accelerator (even where GPUs exist).
    (Not ``ACCELERATE_USE_CPU``: accelerate would then leave DeepSpeed out and run DDP; the
    recipe's ``use_cpu`` is what puts the Trainer on the CPU.)"""
    launched = dict(env)
    path = [*roots, *[entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry and entry not in roots]]
    launched["PYTHONPATH"] = os.pathsep.join(path)
    if cpu:
        launched["DS_ACCELERATOR"] = "cpu"
    return launched


def visible_gpu_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _result_file(call_file: Path) -> Path:
    return call_file.with_suffix(".result.pkl")


def _error_file(call_file: Path, rank: int) -> Path:
    return call_file.with_name(f"rank-{rank}.error")


def _failure(call_file: Path, nproc: int, returncode: int) -> TrainingProcessError:
    """The error of the lowest failed rank, naming the others that failed."""
    failed = [(rank, _error_file(call_file, rank)) for rank in range(nproc) if _error_file(call_file, rank).is_file()]
    if not failed:
        return TrainingProcessError(
            f"torchrun exited with status {returncode} and no process reported an exception (one was "
            "probably killed, e.g. for lack of memory); see the processes' output above"
        )
    rank, error = failed[0]
    others = f" (ranks {[r for r, _ in failed[1:]]} failed too)" if len(failed) > 1 else ""
    return TrainingProcessError(f"rank {rank} of {nproc} failed{others}:\n{error.read_text()}")


def training_processes(recipe: Any) -> int:
    """How many processes ``recipe`` trains in on this machine (what :func:`run_training`
    launches; 1 inside a launch, where this process is one of them)."""
    cpu = bool(getattr(recipe, "use_cpu", False))
    return process_count(0 if cpu else visible_gpu_count(), os.environ, getattr(recipe, "num_processes", None))


def run_training(function: Callable[..., _T], /, **kwargs: Any) -> _T:
    """``function(**kwargs)`` in :func:`process_count` processes (the ``recipe`` argument's
    ``num_processes`` and ``use_cpu`` count), or in this process when that is one or we are
    already distributed. ``function`` must be importable by name (a module-level function)
    and its arguments and result picklable; rank 0's result is returned."""
    recipe = kwargs.get("recipe")
    cpu = bool(getattr(recipe, "use_cpu", False))
    gpus = 0 if cpu else visible_gpu_count()
    requested = getattr(recipe, "num_processes", None)
    if not should_relaunch(gpus, os.environ, requested):
        return function(**kwargs)
    nproc = process_count(gpus, os.environ, requested)
    if gpus == 0 and not cpu:
        raise ValueError(
            f"{nproc} training processes without GPUs need the recipe's use_cpu: true (it has accelerate "
            "join them in one gloo process group; without it each process would train alone)"
        )
    env = launch_environment(os.environ, cpu=cpu, roots=import_roots(function))
    with tempfile.TemporaryDirectory(prefix="timewarp-launch-") as folder:
        call_file = Path(folder) / "call.pkl"
        call_file.write_bytes(pickle.dumps((function, kwargs)))
        done = subprocess.run(torchrun_command(nproc, call_file), env=env, check=False)
        if done.returncode != 0:
            raise _failure(call_file, nproc, done.returncode)
        return pickle.loads(_result_file(call_file).read_bytes())


def _main(argv: list[str]) -> None:
    """Entry point of each launched process: run the call; rank 0 writes the result; a
    failing rank writes its traceback for :func:`run_training` to raise."""
    if len(argv) != 1:
        raise SystemExit("usage: python -m timewarp.training.launch CALL_FILE")
    call_file = Path(argv[0])
    rank = int(os.environ.get("RANK", "0"))
    try:
        function, kwargs = pickle.loads(call_file.read_bytes())
        result = function(**kwargs)
        if rank == 0:
            _result_file(call_file).write_bytes(pickle.dumps(result))
    except BaseException:
        _error_file(call_file, rank).write_text(traceback.format_exc())
        raise


if __name__ == "__main__":
    _main(sys.argv[1:])

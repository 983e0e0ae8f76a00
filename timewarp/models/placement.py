"""Where a model runs and in which precision: one rule for every process that loads a
model. Evaluation (:meth:`~timewarp.models.checkpoint.ModelCheckpoint.load`) and the local
generation backend use it; training's device (the reference pass) follows the same rule.

The rule is a few pure functions of :class:`MachineFacts` (what the machine offers), so it
is tested without a GPU; :meth:`MachineFacts.probe` reads the facts from torch and the
launcher's environment.

- device: an explicit request wins. Otherwise the CPU when asked (a recipe's ``use_cpu``)
  or when there is no CUDA device, else this process's GPU: ``cuda:LOCAL_RANK`` under a
  launcher (torchrun, accelerate, deepspeed), ``cuda`` (the current device) without one.
  Apple's ``mps`` is used only when requested: its bf16 support and kernel coverage vary
  with the macOS version, and training does not pick it either.
- dtype: an explicit request wins. Otherwise bfloat16 when the caller wants it (a recipe's
  ``bf16``) and the device is a GPU that computes in it natively (compute capability 8+;
  older GPUs only emulate it); float32 everywhere else, the CPU included.
- weights are loaded straight onto an accelerator (``device_map``), so a 7B model never
  passes through CPU memory.

This module must not import zenml; torch is imported lazily.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "DTYPES",
    "MachineFacts",
    "Placement",
    "choose_device",
    "choose_dtype",
    "choose_placement",
    "device_map",
    "placement_of",
]

#: Precisions a caller may ask for by name (torch attribute names).
DTYPES: Final = ("float32", "bfloat16", "float16")
#: Requests that mean "choose for me".
_AUTO: Final = (None, "auto")


@dataclass(frozen=True)
class MachineFacts:
    """What the machine offers this process."""

    cuda: bool = False  # a CUDA (or ROCm) device is available
    bf16: bool = False  # that device computes in bfloat16 natively
    local_rank: int | None = None  # LOCAL_RANK set by a launcher; None when run directly

    @classmethod
    def probe(cls, environ: Mapping[str, str] | None = None) -> MachineFacts:
        """The facts of this machine and process (``environ`` defaults to ``os.environ``)."""
        import torch

        environ = os.environ if environ is None else environ
        rank = environ.get("LOCAL_RANK")
        if rank is not None and not rank.strip().isdigit():
            raise ValueError(f"LOCAL_RANK must be a non-negative integer, got {rank!r}; unset it or fix the launcher")
        cuda = torch.cuda.is_available()
        return cls(
            cuda=cuda,
            bf16=cuda and torch.cuda.is_bf16_supported(including_emulation=False),
            local_rank=None if rank is None else int(rank),
        )


def choose_device(facts: MachineFacts, *, requested: str | None = None, use_cpu: bool = False) -> str:
    """The torch device string to run on (see the module docstring)."""
    if requested not in _AUTO:
        return str(requested)
    if use_cpu or not facts.cuda:
        return "cpu"
    return "cuda" if facts.local_rank is None else f"cuda:{facts.local_rank}"


def choose_dtype(device: str, facts: MachineFacts, *, bf16: bool = True, requested: str | None = None) -> str:
    """The dtype name (one of :data:`DTYPES`) to run in on ``device``."""
    if requested not in _AUTO:
        if requested not in DTYPES:
            raise ValueError(f"dtype must be 'auto' or one of {DTYPES}, got {requested!r}")
        return str(requested)
    return "bfloat16" if bf16 and facts.bf16 and device.startswith("cuda") else "float32"


def device_map(device: str) -> dict[str, str] | None:
    """``device_map`` for ``from_pretrained``: every weight straight onto an accelerator;
    None on the CPU, where weights load anyway."""
    return None if device == "cpu" else {"": device}


@dataclass(frozen=True)
class Placement:
    """A device string and a dtype name (see :data:`DTYPES`)."""

    device: str
    dtype: str

    @property
    def device_map(self) -> dict[str, str] | None:
        return device_map(self.device)

    @property
    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)

    def __str__(self) -> str:
        return f"{self.device} in {self.dtype}"


def choose_placement(
    *,
    device: str | None = None,
    dtype: str | None = None,
    bf16: bool = True,
    use_cpu: bool = False,
    facts: MachineFacts | None = None,
) -> Placement:
    """Device and dtype for a model on this machine (``facts`` probed unless given):
    ``device``/``dtype`` as requested, otherwise chosen by the rule of the module docstring."""
    facts = MachineFacts.probe() if facts is None else facts
    chosen = choose_device(facts, requested=device, use_cpu=use_cpu)
    return Placement(chosen, choose_dtype(chosen, facts, bf16=bf16, requested=dtype))


def placement_of(model: Any) -> Placement:
    """Where a loaded model (transformers or PEFT) is and in which precision."""
    return Placement(str(model.device), str(model.dtype).removeprefix("torch."))

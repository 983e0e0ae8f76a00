"""What benchmarks/bench_dpo.py measures per configuration: the timed optimizer steps and what
their batches fed the model (:class:`StepMeter`), and peak memory (:class:`MemoryProbe`)."""

from __future__ import annotations

import ctypes
import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepMeter(TrainerCallback):
    """Times the optimizer steps after the first ``warmup`` ones, in wall time and in this
    process's CPU time (on a shared CPU machine the latter is what the work cost, whatever
    else was scheduled), and counts what their batches fed the model (counted in
    ``training_step``, not in the collator: accelerate's dataloader collates one batch ahead)."""

    def __init__(self, warmup: int, device: torch.device, vision_token_ids: tuple[int, ...]) -> None:
        self.warmup = warmup
        self.device = device
        self.vision_token_ids = torch.tensor(vision_token_ids)
        self.counting = False
        self.start: float | None = None
        self.end: float | None = None
        self.cpu_start: float | None = None
        self.cpu_end: float | None = None
        self.steps = 0
        self.step_seconds: list[float] = []  # each timed step, collation of its batch included
        self.collate_seconds = 0.0  # inside the collator while timing (one batch early: prefetch)
        self._totals: dict[str, Any] = {}

    def _mark(self) -> float:
        synchronize(self.device)
        return time.perf_counter()

    def _begin(self) -> None:
        self.start, self.cpu_start, self.counting = self._mark(), time.process_time(), True

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.warmup == 0:
            self._begin()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.warmup:
            self._begin()
        elif state.global_step > self.warmup:
            previous = self.end if self.end is not None else self.start
            self.end, self.steps = self._mark(), state.global_step - self.warmup
            self.cpu_end = time.process_time()
            if previous is not None:
                self.step_seconds.append(self.end - previous)

    def _add(self, key: str, value: Any) -> None:
        # Kept as device tensors: an .item() per step would add a sync inside the timed span.
        self._totals[key] = self._totals[key] + value if key in self._totals else value

    def wrap(self, training_step: Callable[..., Any]) -> Callable[..., Any]:
        def counted_step(model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            if self.counting:
                ids = inputs["input_ids"]
                self._add("sequences", ids.shape[0])
                self._add("tokens", inputs["attention_mask"].sum())
                self._add("padded_tokens", ids.numel())
                self._add("vision_tokens", torch.isin(ids, self.vision_token_ids.to(ids.device)).sum())
                pixels = inputs.get("pixel_values_videos", inputs.get("pixel_values"))
                if pixels is not None:
                    self._add("vision_patches", pixels.shape[0])
            return training_step(model, inputs, *args, **kwargs)

        return counted_step

    def wrap_collator(self, collator: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> Callable[..., Any]:
        def timed_collator(rows: list[dict[str, Any]]) -> dict[str, Any]:
            start = time.perf_counter()
            batch = collator(rows)
            if self.counting:
                self.collate_seconds += time.perf_counter() - start
            return batch

        return timed_collator

    def totals(self) -> dict[str, int]:
        return {key: int(value) for key, value in self._totals.items()}

    @property
    def seconds(self) -> float:
        if self.start is None or self.end is None:
            raise RuntimeError("no timed steps: need --steps >= 1 after the warm-up")
        return self.end - self.start

    @property
    def cpu_seconds(self) -> float:
        if self.cpu_start is None or self.cpu_end is None:
            raise RuntimeError("no timed steps: need --steps >= 1 after the warm-up")
        return self.cpu_end - self.cpu_start


def _proc_status_kb(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class MemoryProbe:
    """Peak memory of one configuration. GPU: ``max_memory_allocated`` after a reset. CPU: the
    kernel's high-water RSS mark (reset through ``/proc/self/clear_refs``) minus the RSS at the
    start, after freed heap has been handed back (``malloc_trim``); None where Linux does not
    allow it."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._base_kb: int | None = None
        self.start_mb: float | None = None  # what earlier configurations left behind (should be ~0 on GPU)

    @staticmethod
    def _release() -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass

    def start(self) -> None:
        self._release()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_mb = torch.cuda.memory_allocated(self.device) / 2**20
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS (VmHWM)
        except OSError:
            self._base_kb = None
            return
        self._base_kb = _proc_status_kb("VmRSS")
        self.start_mb = None if self._base_kb is None else self._base_kb / 1024

    def peak_mb(self) -> float | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        peak = _proc_status_kb("VmHWM")
        if self._base_kb is None or peak is None:
            return None
        return (peak - self._base_kb) / 1024

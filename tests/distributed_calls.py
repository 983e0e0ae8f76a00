"""Functions that tests/test_distributed_training.py runs in every process of a torchrun
launch (through ``run_training``, which imports them by name there). Heavy imports stay
inside the functions, so a launch that needs none of them starts fast."""

from __future__ import annotations

import os
import signal
from typing import Any


def fail_on_rank_one(recipe: Any) -> str:
    """Rank 1 raises; rank 0 returns."""
    if os.environ["RANK"] == "1":
        raise ValueError("rank 1 has no data to train on")
    return "rank 0 done"


def kill_rank_one(recipe: Any) -> str:
    """Rank 1 is killed (as the kernel kills a process out of memory); rank 0 returns."""
    if os.environ["RANK"] == "1":
        os.kill(os.getpid(), signal.SIGKILL)
    return "rank 0 done"


def _gathered(value: Any) -> list[Any]:
    import torch.distributed as dist

    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def train_dpo_counting_reference(**kwargs: Any) -> tuple[Any, list[int]]:
    """``train_dpo(**kwargs)``; also the number of pairs each process ran through the
    reference model (counted where the reference pass calls it)."""
    from timewarp.training import reference
    from timewarp.training.dpo import train_dpo

    pairs: list[int] = []
    completion_logps = reference.completion_logps

    def counting(model: Any, batch: dict[str, Any]) -> Any:
        pairs.append(batch["input_ids"].shape[0] // 2)  # a batch is [chosen..., rejected...]
        return completion_logps(model, batch)

    reference.completion_logps = counting
    try:
        result = train_dpo(**kwargs)
    finally:
        reference.completion_logps = completion_logps
    return result, _gathered(sum(pairs))


def zero3_load_then_train_dpo(**kwargs: Any) -> tuple[Any, list[int], list[dict[str, Any]], dict[str, Any]]:
    """Under a ZeRO-3 recipe: what each process holds of the weights right after
    ``load_for_training`` (total and local element counts, whether each weight is a
    partitioned DeepSpeed parameter not gathered); the reference log-probs of the first 5
    pairs on that partitioned model in batches of 2 (shares of 3 and 2 pairs: the second
    process pads, so both run 2 batches) with the batches each process ran; then
    :func:`train_dpo_counting_reference`."""
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    from timewarp.models.registry import family_for
    from timewarp.training import reference
    from timewarp.training.collator import FrameSource, VideoPreferenceCollator, preference_rows
    from timewarp.training.common import load_for_training
    from timewarp.training.zero import partitioned_forward

    recipe, family = kwargs["recipe"], family_for(kwargs["model_path"])
    model, processor = load_for_training(family, kwargs["model_path"], recipe)
    parameters = list(model.parameters())
    held = {
        "total": sum(p.ds_numel for p in parameters),
        "local": sum(p.ds_tensor.numel() for p in parameters),
        "materialised": sum(p.numel() for p in parameters),
        "all_partitioned": all(p.ds_status == ZeroParamStatus.NOT_AVAILABLE for p in parameters),
    }
    collator = VideoPreferenceCollator(family, processor, FrameSource(kwargs["corpus"], recipe.frames_per_video))
    rows = preference_rows(kwargs["preferences"])[:5]
    batches: list[int] = []
    completion_logps = reference.completion_logps

    def counting(model: Any, batch: dict[str, Any]) -> Any:
        batches.append(1)
        return completion_logps(model, batch)

    reference.completion_logps = counting
    try:
        with partitioned_forward(model, recipe.to_trl(kwargs["output_dir"])):
            values = reference.gather_reference_logps(model, collator, rows, batch_size=2)
    finally:
        reference.completion_logps = completion_logps
    uneven = {"rows": rows, "values": values, "batches": _gathered(len(batches))}
    del model, parameters
    result, pairs = train_dpo_counting_reference(**kwargs)
    return result, pairs, _gathered(held), uneven

"""DeepSpeed ZeRO outside the Trainer: loading ZeRO-3 weights partitioned and running
forward passes of a partitioned model before training (the reference pass).

transformers loads a model partitioned (``deepspeed.zero.Init``: each process keeps only
its share of every weight) only while a DeepSpeed config with ZeRO-3 is registered with it,
which building the recipe's training arguments does. A partitioned model can only run a
forward pass under DeepSpeed's hooks, which gather each layer's weights from every process
and free them after, so every process must run the same number of forward passes.

This module must not import zenml.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from collections.abc import Iterator
from typing import Any

from timewarp.training.config import TrainingRecipe

__all__ = ["is_partitioned", "partitioned_forward", "partitioned_loading"]


@contextlib.contextmanager
def partitioned_loading(recipe: TrainingRecipe) -> Iterator[None]:
    """Within it, ``from_pretrained`` loads ZeRO-3 weights partitioned when ``recipe`` trains
    with a ZeRO-3 DeepSpeed config (with other recipes loading is unchanged). The recipe's
    training arguments fill the config's "auto" values as the Trainer does, set up the
    process group and register the config with transformers for as long as they live."""
    if recipe.deepspeed is None:
        yield
        return
    import torch.distributed

    # Nothing is written to output_dir: the arguments only configure DeepSpeed for loading,
    # and keep its config registered while this generator (holding them) is suspended.
    training_args = recipe.to_trl(tempfile.gettempdir())  # type: ignore[attr-defined]
    if training_args.hf_deepspeed_config.is_zero3() and torch.distributed.is_initialized():
        import deepspeed

        # On the CPU accelerate starts torch.distributed without DeepSpeed's communication
        # layer; zero.Init would then read the config as for one process (and fail on its
        # train_batch_size). This makes DeepSpeed adopt the process group.
        deepspeed.init_distributed()
    yield


def is_partitioned(model: Any) -> bool:
    """Whether ``model``'s weights are ZeRO-3 partitioned across processes."""
    return any(hasattr(parameter, "ds_id") for parameter in model.parameters())


@contextlib.contextmanager
def partitioned_forward(model: Any, training_args: Any) -> Iterator[None]:
    """Within it, a ZeRO-3 partitioned ``model`` runs forward passes (DeepSpeed's inference
    hooks, configured from ``training_args``' DeepSpeed config); every process must run as
    many. The hooks are removed after, the weights left partitioned for the Trainer. Does
    nothing for a model that is not partitioned."""
    if not is_partitioned(model):
        yield
        return
    import deepspeed

    hf_config = copy.deepcopy(training_args.hf_deepspeed_config)
    # Fills the bucket sizes that depend on the model's hidden size, as the Trainer does.
    hf_config.trainer_config_finalize(training_args, model, num_training_steps=1)
    config = hf_config.config
    # No optimizer in an inference engine (TRL prepares its ZeRO-3 reference model alike).
    config.pop("optimizer", None)
    config.pop("scheduler", None)
    config.get("zero_optimization", {}).pop("offload_optimizer", None)
    engine, *_ = deepspeed.initialize(model=model, config=config)
    try:
        yield
        engine.optimizer.partition_all_parameters()
    finally:
        engine.destroy()
        # destroy() removes the hooks but leaves each module the backward functions bound to
        # this engine, which the Trainer's engine would reuse instead of making its own (and
        # a module PEFT copies for modules_to_save then never gathers its weights for the
        # backward pass).
        for module in model.modules():
            module.__dict__.pop("pre_bwd_fn", None)
            module.__dict__.pop("post_bwd_fn", None)

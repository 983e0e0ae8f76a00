"""Greedy, batched generation with a video-LLM: what the generation scorer, the answering
of free questions and the implicit preference data all ask of a model.

The adapters pad right (training wants the prompt at the same positions in chosen and
rejected rows); a decoder-only model continues the last position of each row, so batches
are re-padded left before ``generate``.

This module must not import zenml; torch is imported lazily.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm.auto import tqdm

from timewarp.models.base import VideoLLMFamily, VideoSample
from timewarp.models.inputs import chunks, left_padded, model_inputs, pad_token_id
from timewarp.models.logprobs import unwrap_model

__all__ = ["generate_reply_batches", "generate_replies"]


def _greedy_config(model: Any, processor: Any, max_new_tokens: int) -> Any:
    config = copy.deepcopy(unwrap_model(model).generation_config)
    config.do_sample = False
    config.num_beams = 1
    # Sampling knobs of a hub generation config are meaningless (and warned about) when greedy.
    config.temperature = config.top_p = config.top_k = None
    config.max_new_tokens = max_new_tokens
    if config.pad_token_id is None:
        config.pad_token_id = pad_token_id(processor)
    return config


def generate_reply_batches(
    model: Any,
    processor: Any,
    family: VideoLLMFamily,
    samples: Iterable[VideoSample],
    *,
    batch_size: int = 8,
    max_new_tokens: int = 16,
    total: int | None = None,
    desc: str = "generate",
) -> Iterator[list[str]]:
    """Greedy replies (new tokens only, special tokens dropped) to ``samples``, in order,
    one list per ``generate`` call of ``batch_size`` samples: a caller can keep each batch
    (a cache) before the next one runs."""
    import torch

    config = _greedy_config(model, processor, max_new_tokens)
    with tqdm(total=total, desc=desc, unit="item") as progress:
        for chunk in chunks(samples, batch_size):
            with torch.no_grad():
                inputs = model_inputs(left_padded(family.encode(processor, chunk)), model)
                output = model.generate(**inputs, generation_config=config)
            new_tokens = output[:, inputs["input_ids"].shape[1] :]
            progress.update(len(chunk))
            yield processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)


def generate_replies(
    model: Any,
    processor: Any,
    family: VideoLLMFamily,
    samples: Iterable[VideoSample],
    *,
    batch_size: int = 8,
    max_new_tokens: int = 16,
    total: int | None = None,
    desc: str = "generate",
) -> list[str]:
    """Greedy replies (new tokens only, special tokens dropped) to ``samples``, in order,
    ``batch_size`` samples per ``generate`` call."""
    batches = generate_reply_batches(
        model, processor, family, samples, batch_size=batch_size, max_new_tokens=max_new_tokens, total=total, desc=desc
    )
    return [reply for batch in batches for reply in batch]

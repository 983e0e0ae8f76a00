"""Log-probabilities of answers after a video and a prompt, several items per forward: what
the ``loglik`` and ``text_loglik`` scorers of :mod:`timewarp.evaluation.scoring` rank.

An answer is scored as DPO training scores a completion: the summed log-probability of the
tokens ``encode`` marks as the completion (the answer and the end-of-turn token), by
:func:`~timewarp.models.logprobs.completion_logps`, the function DPO's reference values
come from.

For a batch of items, each video and prompt runs once:

1. the prompts are encoded together and re-padded left, so every row's last prompt token
   sits in the last column;
2. the prompts minus that column run in one forward that keeps the KV cache
   (:func:`prefix_cache`);
3. the cache rows are repeated per answer (items may have different numbers of answers)
   and the rows ``[last prompt token, answer..., padding]`` are scored from it in a second
   forward. Starting at the prompt's last token gives ``completion_logps`` the position
   that predicts the answer's first token.

Padding changes nothing: the attention mask covers each row's own prefix and answer, and
positions count real tokens only, so every row is computed as it would be alone (tested
against one item at a time and against full forwards). Positions are passed explicitly in
both forwards, except the prefix positions of models with multimodal rotary positions
(Qwen2-VL's M-RoPE): those compute 3-D positions from the attention mask themselves and
keep, per row, the offset of the text positions after the video (``rope_deltas``), which
the answers' positions continue from.

This module must not import zenml; torch is imported lazily.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import Any, Final

from tqdm.auto import tqdm

from timewarp.models.inputs import chunks, left_padded, model_device, model_inputs, pad_token_id
from timewarp.models.base import VideoLLMFamily, VideoSample
from timewarp.models.batches import truncate_batch
from timewarp.models.logprobs import completion_logps, unwrap_model

__all__ = [
    "answer_token_ids",
    "most_likely_answers",
    "option_logps",
    "option_logps_full",
    "prefix_cache",
]

#: Config attributes naming the media placeholder tokens (they differ between families).
_MEDIA_TOKEN_ATTRS: Final = ("image_token_id", "video_token_id", "image_token_index", "video_token_index")


def answer_token_ids(
    family: VideoLLMFamily, processor: Any, sample: VideoSample, answers: Sequence[str]
) -> list[list[int]]:
    """The completion tokens ``encode`` builds for each answer after ``sample``'s prompt
    (answer and end-of-turn): exactly the tokens training and ``completion_logps`` score.

    They follow the chat template's fixed generation prompt, so they do not depend on the
    question or the video and one call serves a whole benchmark.
    """
    batch = family.encode(processor, [VideoSample(sample.frames, sample.prompt, answer) for answer in answers])
    return [
        ids[mask.bool()].tolist() for ids, mask in zip(batch["input_ids"], batch["completion_mask"], strict=True)
    ]


def _cache_keyword(module: Any) -> str:
    # transformers renamed ``past_key_values`` to ``cache`` (the old name is deprecated).
    parameters = inspect.signature(module.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _has_multimodal_positions(base: Any) -> bool:
    """Whether the model derives (M-RoPE) positions from the attention mask itself."""
    return callable(getattr(base, "get_rope_index", None))


def prefix_cache(model: Any, inputs: dict[str, Any]) -> Any:
    """KV cache of one forward over ``inputs`` (model inputs of the prompts), computed
    without the LM head, as ``completion_logps`` runs the model."""
    base = unwrap_model(model).base_model
    output = base(**inputs, use_cache=True)
    cache = getattr(output, "cache", None)
    if cache is None:
        cache = getattr(output, "past_key_values", None)
    if cache is None:
        raise RuntimeError(f"{type(base).__name__} returned no KV cache")
    return cache


def _answer_rows(
    last_tokens: Sequence[int], answer_ids: Sequence[Sequence[Sequence[int]]], pad: int
) -> tuple[Any, Any, Any]:
    """The rows ``[last prompt token, answer..., padding]`` of every answer of every sample
    (right-padded), their attention mask (the real tokens) and completion mask (the answer)."""
    import torch

    rows = [[token, *ids] for token, answers in zip(last_tokens, answer_ids, strict=True) for ids in answers]
    input_ids = torch.full((len(rows), max(map(len, rows))), pad, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    completion_mask = torch.zeros_like(input_ids)
    for index, row in enumerate(rows):
        input_ids[index, : len(row)] = torch.tensor(row)
        attention_mask[index, : len(row)] = 1
        completion_mask[index, 1 : len(row)] = 1
    return input_ids, attention_mask, completion_mask


def option_logps(
    model: Any,
    processor: Any,
    family: VideoLLMFamily,
    samples: Sequence[VideoSample],
    answer_ids: Sequence[Sequence[Sequence[int]]],
) -> list[Any]:
    """For each of ``samples``, the summed log-probability of each of its answers
    (``answer_ids[k]``, token ids from :func:`answer_token_ids`) after its video and
    prompt: one float32 tensor per sample, in two forwards for the whole batch (see the
    module docstring)."""
    import torch

    if len(samples) != len(answer_ids) or not samples:
        raise ValueError(f"need one list of answers per sample, got {len(answer_ids)} for {len(samples)} samples")
    if not all(answer_ids) or not all(all(ids) for ids in answer_ids):
        raise ValueError("every sample needs at least one answer, and every answer at least one token")
    hf_model = unwrap_model(model)
    base = hf_model.base_model
    encoded = left_padded(family.encode(processor, list(samples)))
    width = encoded["input_ids"].shape[1]
    last = encoded["input_ids"][:, -1]
    config = hf_model.config
    media = {getattr(config, attr) for attr in _MEDIA_TOKEN_ATTRS if isinstance(getattr(config, attr, None), int)}
    if media & set(last.tolist()):
        raise ValueError("a prompt ends with a media token; its prefix cannot be split off")
    device = model_device(model)
    # truncate_batch also refuses to cut a video token where the batch marks them.
    prefix = model_inputs(truncate_batch(encoded, width - 1), model)
    prefix_mask = prefix["attention_mask"]
    multimodal_positions = _has_multimodal_positions(base)
    if not multimodal_positions:
        prefix["position_ids"] = (prefix_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    counts = [len(answers) for answers in answer_ids]
    owner = torch.repeat_interleave(torch.arange(len(samples)), torch.tensor(counts)).to(device)
    input_ids, option_mask, completion_mask = _answer_rows(last.tolist(), answer_ids, pad_token_id(processor))
    with torch.no_grad():
        cache = prefix_cache(model, prefix)
        # Where each row's next token sits: after its real prefix tokens, shifted like the
        # text after the video for M-RoPE models.
        starts = prefix_mask.long().sum(dim=1)
        if multimodal_positions:
            starts = starts + base.rope_deltas.reshape(-1).to(starts.device)
        cache.batch_select_indices(owner)
        batch = {
            "input_ids": input_ids.to(device),
            "attention_mask": torch.cat([prefix_mask[owner], option_mask.to(device)], dim=1),
            "position_ids": starts[owner, None] + torch.arange(input_ids.shape[1], device=device),
            "completion_mask": completion_mask.to(device),
            # completion_logps runs the model with use_cache=False: a cache passed in is still
            # read and extended; it is only not created or returned.
            _cache_keyword(base): cache,
        }
        logps = completion_logps(model, batch).float().cpu()
    return list(logps.split(counts))


def option_logps_full(
    model: Any, processor: Any, family: VideoLLMFamily, sample: VideoSample, answers: Sequence[str]
) -> Any:
    """As :func:`option_logps` for one sample, with one full forward per answer (a batch of
    ``len(answers)`` rows, the video encoded in each): the reference the cached path is
    tested against."""
    import torch

    batch = family.encode(processor, [VideoSample(sample.frames, sample.prompt, answer) for answer in answers])
    inputs = model_inputs(batch, model)
    inputs["completion_mask"] = batch["completion_mask"].to(model_device(model))
    with torch.no_grad():
        return completion_logps(model, inputs).float().cpu()


def most_likely_answers(
    model: Any,
    processor: Any,
    family: VideoLLMFamily,
    queries: Iterable[tuple[VideoSample, Sequence[str]]],
    *,
    batch_size: int,
    total: int | None = None,
    desc: str = "log-likelihood",
) -> list[int]:
    """For each (sample, answers) query, the index of the answer the model finds most
    likely, ``batch_size`` queries per pair of forwards.

    An answer's completion tokens depend on neither video nor question, so they are
    encoded once per distinct answer (encoding runs the processor over a video)."""
    token_ids: dict[str, list[int]] = {}

    def ids_of(sample: VideoSample, answers: Sequence[str]) -> list[list[int]]:
        missing = [answer for answer in dict.fromkeys(answers) if answer not in token_ids]
        if missing:
            token_ids.update(zip(missing, answer_token_ids(family, processor, sample, missing), strict=True))
        return [token_ids[answer] for answer in answers]

    picks: list[int] = []
    with tqdm(total=total, desc=desc, unit="item") as progress:
        for chunk in chunks(queries, batch_size):
            samples = [sample for sample, _ in chunk]
            ids = [ids_of(sample, answers) for sample, answers in chunk]
            scores = option_logps(model, processor, family, samples, ids)
            picks.extend(int(score.argmax()) for score in scores)
            progress.update(len(chunk))
    return picks

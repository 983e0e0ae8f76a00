"""Scoring a video-LLM on a four-option TimeWarp benchmark (normal or shuffled video).

Both scorers show the model the same thing: ``frames_per_video`` frames spread evenly over
the ORIGINAL video (normal variant) or over the SHUFFLED video (shuffled variant), as
training samples them (:func:`~timewarp.training.collator.select_frames`), and the prompt
of :func:`mcq_prompt`: the question, its lettered options and "Answer with the option's
letter.". Everything goes through the family adapter's ``encode``, so the chat format is
the one the model was trained with.

- ``generation``: greedy decoding, items batched. The adapters pad right (training wants
  the prompt at the same positions in chosen and rejected rows); a decoder-only model
  continues the last position of each row, so batches are re-padded left before
  ``generate``. The reply (new tokens only) goes through
  :func:`~timewarp.evaluation.extract.extract_option`; no option found counts as wrong.
- ``loglik``: the option whose answer the model finds most likely, by the summed
  log-probability of the completion ``encode`` marks (the answer plus the end-of-turn
  token, as DPO training scores it). The answer is the option's LETTER alone: the prompt
  asks for the letter, so this scores exactly the reply the generation scorer hopes for,
  and the answers are equally short (a letter token; real tokenizers have one per letter),
  whereas option texts differ in length and a summed log-probability favours short texts.

- ``text_loglik``: the question WITHOUT its options, as training prompts ask it, and each
  option's TEXT as the answer; the option with the highest summed log-probability wins. It
  measures what open-ended SFT and DPO teach a model that never learnt the lettered
  format: the scorer of the embedded default's tiny models, whose template answers are the
  option sentences themselves ("Blue scene.", one token a colour). The sum is fair when
  options differ only in a name of similar length, as there; it favours short options when
  they differ in length, and dividing by the length would favour names split into more
  (near-certain) tokens instead, so long free-text options are better scored by letter.

The log-likelihood scorers run the video and question once per item: the prompt minus its
last token goes through the model with a KV cache (:func:`prefix_cache`), the cache is
repeated for the options and each option row (the prompt's last token, then the answer)
is scored from it in one forward by
:func:`~timewarp.training.reference.completion_logps`, the function DPO's reference
values come from. Starting the rows at the prompt's last token gives ``completion_logps``
the position that predicts the answer's first token, so nothing is re-implemented. The
cached path serves all five families (Qwen2-VL's M-RoPE continues from the ``rope_deltas``
its prefix forward stores); :data:`FULL_FORWARD_FAMILIES` lists families scored instead
with one full forward per option (none at present).

This module must not import zenml.
"""

from __future__ import annotations

import copy
import inspect
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from tqdm.auto import tqdm

from timewarp.corpus import PreparedVideo, VideoCorpus
from timewarp.evaluation.extract import extract_option
from timewarp.evaluation.report import ItemResult
from timewarp.generation.datasets import MCQBenchmark
from timewarp.generation.records import OPTION_LETTERS, MCQItem
from timewarp.models.base import VideoLLMFamily, VideoSample
from timewarp.training.collator import select_frames, truncate_batch
from timewarp.training.reference import unwrap_model, completion_logps

__all__ = [
    "FULL_FORWARD_FAMILIES",
    "INSTRUCTION",
    "SCORERS",
    "ScoringConfig",
    "answer_token_ids",
    "generate_replies",
    "mcq_prompt",
    "option_logps",
    "option_logps_full",
    "prefix_cache",
    "score_benchmark",
    "score_generation",
    "score_loglik",
    "score_text_loglik",
]

SCORERS: Final = ("generation", "loglik", "text_loglik")
INSTRUCTION: Final = "Answer with the option's letter."
#: Families whose options are scored with full forwards instead of from a cached prefix.
#: Empty: the cached path matches full forwards for every registered family (tested).
FULL_FORWARD_FAMILIES: Final[frozenset[str]] = frozenset()

#: Per-token (batch, length) tensors an encoded batch may hold; re-padding moves them together.
_TOKEN_KEYS: Final = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")
#: Config attributes naming the media placeholder tokens (they differ between families).
_MEDIA_TOKEN_ATTRS: Final = ("image_token_id", "video_token_id", "image_token_index", "video_token_index")


@dataclass(frozen=True)
class ScoringConfig:
    frames_per_video: int = 8
    batch_size: int = 8  # items per generate call
    max_new_tokens: int = 16
    scorers: tuple[str, ...] = SCORERS

    def __post_init__(self) -> None:
        unknown = [s for s in self.scorers if s not in SCORERS]
        if unknown or not self.scorers:
            raise ValueError(f"scorers must be a non-empty subset of {SCORERS}, got {self.scorers}")
        if self.frames_per_video < 1 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("frames_per_video, batch_size and max_new_tokens must be >= 1")


def mcq_prompt(item: MCQItem) -> str:
    """The user's text for an item, identical for both scorers."""
    return f"{item.question_with_options()}\n{INSTRUCTION}"


# ---- frames ---------------------------------------------------------------------------


class _VariantFrames:
    """Frames a benchmark variant shows for a video: the original video's for ``normal``,
    the shuffled video's for ``shuffled``, subsampled like training. Keeps the last few
    videos, since a video's items are usually adjacent."""

    def __init__(self, corpus: VideoCorpus, variant: str, frames_per_video: int, cache_size: int = 16) -> None:
        self._corpus = corpus
        self._variant = variant
        self._count = frames_per_video
        self._videos: dict[str, PreparedVideo] = {v.video_id: v for v in corpus.videos}
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def __call__(self, video_id: str) -> np.ndarray:
        if video_id in self._cache:
            self._cache.move_to_end(video_id)
            return self._cache[video_id]
        try:
            video = self._videos[video_id]
        except KeyError:
            raise KeyError(f"video {video_id!r} is not in the corpus at {self._corpus.root}") from None
        shown = self._corpus.frames(video) if self._variant == "normal" else self._corpus.shuffled_frames(video)
        frames = select_frames(shown, self._count)
        self._cache[video_id] = frames
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return frames


def _samples(benchmark: MCQBenchmark, corpus: VideoCorpus, frames_per_video: int) -> Iterator[VideoSample]:
    frames = _VariantFrames(corpus, benchmark.variant, frames_per_video)
    for item in benchmark.items:
        yield VideoSample(frames(item.video_id), mcq_prompt(item))


def _result(item: MCQItem, benchmark: MCQBenchmark, predicted: int | None) -> ItemResult:
    answer = benchmark.answer_index(item)
    return ItemResult(item.id, item.question_type, benchmark.variant, predicted == answer, predicted, answer)


# ---- tensors ---------------------------------------------------------------------------


def _device(model: Any) -> Any:
    device = getattr(model, "device", None)
    return device if device is not None else next(model.parameters()).device


def _model_inputs(batch: dict[str, Any], model: Any) -> dict[str, Any]:
    """``batch`` without ``completion_mask``, on the model's device; pixels in its dtype
    (processors return float32, a bf16 vision tower would reject them)."""
    import torch

    device, dtype = _device(model), getattr(model, "dtype", None)
    inputs: dict[str, Any] = {}
    for key, value in batch.items():
        if key == "completion_mask":
            continue
        if isinstance(value, torch.Tensor):
            if key.startswith("pixel_values") and value.is_floating_point() and dtype is not None:
                value = value.to(device=device, dtype=dtype)
            else:
                value = value.to(device)
        inputs[key] = value
    return inputs


def _pad_id(processor: Any) -> int:
    tokenizer = processor.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad nor an eos token")
    return int(pad)


def _left_padded(batch: dict[str, Any]) -> dict[str, Any]:
    """``batch`` with every row's tokens moved to the right end (left padding). Vision
    tensors stay: videos are matched to placeholders in row order, which is unchanged."""
    import torch

    mask = batch["attention_mask"]
    lengths = mask.sum(dim=1)
    width = mask.shape[1]
    positions = torch.arange(width, device=mask.device).expand_as(mask)
    if bool((mask == (positions >= width - lengths[:, None]).to(mask.dtype)).all()):
        return dict(batch)  # already left-padded (or unpadded)
    if not bool((mask == (positions < lengths[:, None]).to(mask.dtype)).all()):
        raise ValueError("encoded rows are neither left- nor right-padded")
    out = dict(batch)
    for key in _TOKEN_KEYS:
        if key in batch:
            out[key] = torch.stack(
                [torch.roll(row, shifts=int(width - n)) for row, n in zip(batch[key], lengths.tolist())]
            )
    return out


# ---- generation scorer -----------------------------------------------------------------


def _greedy_config(model: Any, processor: Any, max_new_tokens: int) -> Any:
    config = copy.deepcopy(unwrap_model(model).generation_config)
    config.do_sample = False
    config.num_beams = 1
    # Sampling knobs of a hub generation config are meaningless (and warned about) when greedy.
    config.temperature = config.top_p = config.top_k = None
    config.max_new_tokens = max_new_tokens
    if config.pad_token_id is None:
        config.pad_token_id = _pad_id(processor)
    return config


def generate_replies(
    model: Any,
    processor: Any,
    family: VideoLLMFamily,
    samples: Sequence[VideoSample] | Iterator[VideoSample],
    *,
    batch_size: int = 8,
    max_new_tokens: int = 16,
    total: int | None = None,
    desc: str = "generate",
) -> list[str]:
    """Greedy replies (new tokens only, special tokens dropped) to ``samples``, in order,
    ``batch_size`` samples per ``generate`` call."""
    import torch

    config = _greedy_config(model, processor, max_new_tokens)
    replies: list[str] = []
    chunk: list[VideoSample] = []

    def flush() -> None:
        inputs = _model_inputs(_left_padded(family.encode(processor, chunk)), model)
        output = model.generate(**inputs, generation_config=config)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        replies.extend(processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        progress.update(len(chunk))
        chunk.clear()

    with torch.no_grad(), tqdm(total=total, desc=desc, unit="item") as progress:
        for sample in samples:
            chunk.append(sample)
            if len(chunk) == batch_size:
                flush()
        if chunk:
            flush()
    return replies


def score_generation(
    model: Any,
    processor: Any,
    family: VideoLLMFamily,
    benchmark: MCQBenchmark,
    corpus: VideoCorpus,
    config: ScoringConfig,
) -> list[ItemResult]:
    replies = generate_replies(
        model,
        processor,
        family,
        _samples(benchmark, corpus, config.frames_per_video),
        batch_size=config.batch_size,
        max_new_tokens=config.max_new_tokens,
        total=len(benchmark.items),
        desc=f"generation scorer ({benchmark.variant})",
    )
    return [
        _result(item, benchmark, extract_option(reply, item.options))
        for item, reply in zip(benchmark.items, replies, strict=True)
    ]


# ---- log-likelihood scorer ---------------------------------------------------------------


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


def prefix_cache(model: Any, inputs: dict[str, Any]) -> Any:
    """KV cache of one forward over ``inputs`` (model inputs of the prompt), computed without
    the LM head, as ``completion_logps`` runs the model."""
    base = unwrap_model(model).base_model
    output = base(**inputs, use_cache=True)
    cache = getattr(output, "cache", None)
    if cache is None:
        cache = getattr(output, "past_key_values", None)
    if cache is None:
        raise RuntimeError(f"{type(base).__name__} returned no KV cache")
    return cache


def option_logps(
    model: Any, processor: Any, family: VideoLLMFamily, sample: VideoSample, answer_ids: Sequence[Sequence[int]]
) -> Any:
    """Summed log-probability of each answer's tokens (``answer_ids``, from
    :func:`answer_token_ids`) after ``sample``'s video and prompt, a float32 tensor.

    The prompt minus its last token is run once with a cache; the rows
    ``[last prompt token, answer...]`` (right-padded, causal attention ignores the padding)
    are scored from the cache repeated per answer.
    """
    import torch

    encoded = family.encode(processor, [VideoSample(sample.frames, sample.prompt)])
    length = encoded["input_ids"].shape[1]
    last = int(encoded["input_ids"][0, -1])
    config = unwrap_model(model).config
    media = {getattr(config, attr) for attr in _MEDIA_TOKEN_ATTRS if isinstance(getattr(config, attr, None), int)}
    if last in media:
        raise ValueError("the prompt ends with a media token; its prefix cannot be split off")
    device = _device(model)
    with torch.no_grad():
        # truncate_batch also refuses to cut a video token where the batch marks them.
        cache = prefix_cache(model, _model_inputs(truncate_batch(encoded, length - 1), model))
        cache.batch_repeat_interleave(len(answer_ids))
        width = 1 + max(len(ids) for ids in answer_ids)
        input_ids = torch.full((len(answer_ids), width), _pad_id(processor), dtype=torch.long)
        completion_mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(answer_ids):
            input_ids[row, : 1 + len(ids)] = torch.tensor([last, *ids])
            completion_mask[row, 1 : 1 + len(ids)] = 1
        batch = {
            "input_ids": input_ids.to(device),
            "completion_mask": completion_mask.to(device),
            # completion_logps runs the model with use_cache=False: a cache passed in is still
            # read and extended; it is only not created or returned.
            _cache_keyword(unwrap_model(model).base_model): cache,
        }
        return completion_logps(model, batch).float().cpu()


def option_logps_full(
    model: Any, processor: Any, family: VideoLLMFamily, sample: VideoSample, answers: Sequence[str]
) -> Any:
    """As :func:`option_logps`, with one full forward per answer (a batch of
    ``len(answers)`` rows, the video encoded in each): the reference the cached path is
    tested against, and the path for :data:`FULL_FORWARD_FAMILIES`."""
    import torch

    batch = family.encode(processor, [VideoSample(sample.frames, sample.prompt, answer) for answer in answers])
    inputs = _model_inputs(batch, model)
    inputs["completion_mask"] = batch["completion_mask"].to(_device(model))
    with torch.no_grad():
        return completion_logps(model, inputs).float().cpu()


def _most_likely(
    model: Any,
    processor: Any,
    family: VideoLLMFamily,
    sample: VideoSample,
    answers: Sequence[str],
    token_cache: dict[str, list[int]],
) -> int:
    """Index of the answer the model finds most likely after ``sample``. An answer's
    completion tokens depend on neither video nor question, so ``token_cache`` keeps them
    across items (encoding an answer runs the processor over the video)."""
    if family.name in FULL_FORWARD_FAMILIES:
        return int(option_logps_full(model, processor, family, sample, answers).argmax())
    missing = [answer for answer in dict.fromkeys(answers) if answer not in token_cache]
    if missing:
        token_cache.update(zip(missing, answer_token_ids(family, processor, sample, missing), strict=True))
    answer_ids = [token_cache[answer] for answer in answers]
    return int(option_logps(model, processor, family, sample, answer_ids).argmax())


def score_loglik(
    model: Any,
    processor: Any,
    family: VideoLLMFamily,
    benchmark: MCQBenchmark,
    corpus: VideoCorpus,
    config: ScoringConfig,
) -> list[ItemResult]:
    results: list[ItemResult] = []
    token_cache: dict[str, list[int]] = {}
    samples = _samples(benchmark, corpus, config.frames_per_video)
    desc = f"loglik scorer ({benchmark.variant})"
    for item, sample in tqdm(zip(benchmark.items, samples), total=len(benchmark.items), desc=desc, unit="item"):
        answers = list(OPTION_LETTERS[: len(item.options)])
        results.append(_result(item, benchmark, _most_likely(model, processor, family, sample, answers, token_cache)))
    return results


def score_text_loglik(
    model: Any,
    processor: Any,
    family: VideoLLMFamily,
    benchmark: MCQBenchmark,
    corpus: VideoCorpus,
    config: ScoringConfig,
) -> list[ItemResult]:
    results: list[ItemResult] = []
    token_cache: dict[str, list[int]] = {}
    frames = _VariantFrames(corpus, benchmark.variant, config.frames_per_video)
    desc = f"text log-likelihood scorer ({benchmark.variant})"
    for item in tqdm(benchmark.items, desc=desc, unit="item"):
        sample = VideoSample(frames(item.video_id), item.question)
        predicted = _most_likely(model, processor, family, sample, item.options, token_cache)
        results.append(_result(item, benchmark, predicted))
    return results


# ---- all ------------------------------------------------------------------------------------

_SCORER_FUNCTIONS: Final[dict[str, Callable[..., list[ItemResult]]]] = {
    "generation": score_generation,
    "loglik": score_loglik,
    "text_loglik": score_text_loglik,
}


def score_benchmark(
    model: Any,
    processor: Any,
    family: VideoLLMFamily,
    benchmark: MCQBenchmark,
    corpus: VideoCorpus,
    config: ScoringConfig = ScoringConfig(),
) -> dict[str, list[ItemResult]]:
    """One :class:`ItemResult` per item of ``benchmark`` for each scorer of ``config``,
    keyed by scorer name. The model is scored in eval mode (its mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        return {
            name: _SCORER_FUNCTIONS[name](model, processor, family, benchmark, corpus, config)
            for name in config.scorers
        }
    finally:
        model.train(was_training)

"""Shared machinery of the chat video-LLM family adapters (LLaVA-OneVision, Video-LLaVA,
InternVL, VideoLLaMA3).

Each family differs in its chat format, its processor and its vision tensors; padding and
marking the answer's tokens are the same for all and live here in :class:`ChatVideoFamily`
(loading through the Auto classes is :meth:`VideoLLMFamily.load`'s, shared by every family).

How ``completion_mask`` is found: the family renders the prompt (up to and including the
assistant's generation prompt) and the completion (the text the template puts after it:
the answer and the end-of-turn marker, as TRL's DPO does) as plain strings, with ONE
video placeholder token. The number of completion tokens is counted with the tokenizer
on the unexpanded text: the placeholder is an atomic special token, so expanding it into
many vision tokens cannot change how the text after it is tokenized. After the processor
has expanded and padded the batch, the completion is the last ``n`` real tokens of each
row.

This module must not import zenml.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from timewarp.models.base import VideoLLMFamily, VideoSample
from timewarp.models.tiny_tokenizer import EOS_TOKEN, IM_START, PAD_TOKEN, make_tiny_tokenizer

__all__ = [
    "TINY_TEXT_SIZES",
    "TINY_VISION_SIZES",
    "ChatVideoFamily",
    "build_and_save",
    "chatml_template",
    "completion_token_counts",
    "make_tiny_chatml_tokenizer",
    "mark_completions",
    "token_ids",
]


def completion_token_counts(tokenizer: Any, prompts: Sequence[str], completions: Sequence[str]) -> list[int]:
    """Tokens that each completion adds after its prompt.

    Raises ``ValueError`` if the prompt's tokens are not a prefix of the tokens of
    prompt + completion (a merge across the boundary), since the answer's tokens would
    then be ill-defined.
    """
    counts = []
    for prompt, completion in zip(prompts, completions, strict=True):
        if not completion:
            counts.append(0)
            continue
        prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        full_ids = tokenizer(prompt + completion, add_special_tokens=True)["input_ids"]
        if full_ids[: len(prompt_ids)] != prompt_ids:
            raise ValueError(
                "the prompt's tokens are not a prefix of prompt + completion's tokens "
                f"(a BPE merge across the boundary): prompt ends {prompt[-20:]!r}, completion {completion[:20]!r}"
            )
        counts.append(len(full_ids) - len(prompt_ids))
    return counts


def mark_completions(attention_mask: Any, counts: Sequence[int]) -> Any:
    """A 0/1 tensor like ``attention_mask`` with 1 on the last ``counts[i]`` real tokens of
    row ``i`` (works for left and right padding)."""
    import torch

    mask = torch.zeros_like(attention_mask)
    for row, n in enumerate(counts):
        if n == 0:
            continue
        real = attention_mask[row].nonzero().flatten()
        if len(real) < n:
            raise ValueError(f"row {row} has {len(real)} tokens, fewer than its {n} completion tokens")
        mask[row, real[-n:]] = 1
    return mask


class ChatVideoFamily(VideoLLMFamily):
    """A :class:`~timewarp.models.base.VideoLLMFamily` for models that transformers loads
    with ``AutoModelForImageTextToText`` + ``AutoProcessor`` and that take a video as
    one placeholder token in the text. A subclass declares the contract's module names and
    implements the chat format and ``make_tiny``."""

    #: Padding side of encoded batches. Right padding keeps the prompt at the same
    #: positions in chosen and rejected rows.
    padding_side: ClassVar[str] = "right"

    # ---- the family's chat format -------------------------------------------------
    @abstractmethod
    def render_prompt(self, processor: Any, question: str) -> str:
        """The conversation up to the assistant's answer (generation prompt included),
        with one video placeholder token, exactly as the family's chat template renders
        a user turn holding ``[video, text]``."""

    @abstractmethod
    def render_completion(self, processor: Any, answer: str) -> str:
        """What the chat template writes after the generation prompt for ``answer``."""

    def processor_call_kwargs(self, processor: Any, samples: Sequence[VideoSample]) -> dict[str, Any]:
        """Extra keyword arguments for the processor call (e.g. frame sizes, metadata)."""
        return {}

    # ---- shared ---------------------------------------------------------------------
    def encode(self, processor: Any, samples: list[VideoSample]) -> dict[str, Any]:
        """A padded batch (see :meth:`timewarp.models.base.VideoLLMFamily.encode`)."""
        if not samples:
            raise ValueError("encode needs at least one sample")
        prompts = [self.render_prompt(processor, s.prompt) for s in samples]
        completions = [
            self.render_completion(processor, s.completion) if s.completion is not None else "" for s in samples
        ]
        counts = completion_token_counts(processor.tokenizer, prompts, completions)
        videos = [_check_frames(s.frames) for s in samples]
        batch = processor(
            text=[p + c for p, c in zip(prompts, completions, strict=True)],
            videos=videos,
            padding=True,
            padding_side=self.padding_side,
            return_tensors="pt",
            **self.processor_call_kwargs(processor, samples),
        )
        out = dict(batch)
        out["completion_mask"] = mark_completions(out["attention_mask"], counts)
        return out


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a (T, H, W, 3) uint8 array, got {frames.shape} {frames.dtype}")
    return frames


# ---- helpers for the tiny checkpoints ------------------------------------------------
#: Sizes of the tiny language models (as the tests' tiny chat LM, ``tests/tiny_text_lm.py``).
TINY_TEXT_SIZES: dict[str, int] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
}
#: Sizes of the tiny vision towers.
TINY_VISION_SIZES: dict[str, int] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
}


def chatml_template(image_token: str, video_token: str) -> str:
    """ChatML in which an image renders as ``image_token`` and a video as ``video_token``,
    each on its own line where the turn holds it."""
    return (
        "{%- for message in messages %}"
        "{{- '<|im_start|>' + message['role'] + '\\n' }}"
        "{%- if message['content'] is string %}{{- message['content'] }}"
        "{%- else %}{%- for part in message['content'] %}"
        "{%- if part['type'] == 'image' %}{{- '" + image_token + "\\n' }}"
        "{%- elif part['type'] == 'video' %}{{- '" + video_token + "\\n' }}"
        "{%- elif part['type'] == 'text' %}{{- part['text'] }}"
        "{%- endif %}"
        "{%- endfor %}{%- endif %}"
        "{{- '<|im_end|>\\n' }}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    )


def make_tiny_chatml_tokenizer(chat_template: str, named_tokens: Mapping[str, str]) -> Any:
    """A tiny tokenizer with ChatML's special tokens (as Qwen checkpoints name them) and the
    family's ``named_tokens`` (see :func:`~timewarp.models.tiny_tokenizer.make_tiny_tokenizer`)."""
    return make_tiny_tokenizer(
        chat_template=chat_template,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        other_special_tokens=(IM_START,),
        named_tokens=named_tokens,
    )


def token_ids(tokenizer: Any) -> dict[str, int | None]:
    """``pad_token_id``/``eos_token_id``/``bos_token_id`` of ``tokenizer`` for a text config."""
    return {
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
    }


def build_and_save(model_cls: Any, config: Any, processor: Any, out_dir: str | Path, *, seed: int) -> Path:
    """Random-weight ``model_cls(config)`` seeded with ``seed`` (the caller's torch RNG
    is left alone), saved with ``processor`` and a greedy generation config into ``out_dir``."""
    import torch
    from transformers import GenerationConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config).eval()
    tokenizer = processor.tokenizer
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out

"""Offline tiny tokenizers for test checkpoints of any chat model family.

:func:`train_byte_level_bpe` trains a byte-level BPE tokenizer in milliseconds on a small
built-in corpus with Qwen2's pipeline (NFC, Qwen2's split regex, byte-level with no prefix
space), so tokenization is the same whether transformers loads the saved
``tokenizer.json`` verbatim or rebuilds it as a ``Qwen2Tokenizer``.
:func:`make_tiny_tokenizer` adds a family's special tokens (chat markers, image/video
placeholders, ...) as atomic added tokens, and wraps it in a :class:`~transformers.PreTrainedTokenizerFast` carrying the
family's chat template. Saved with ``save_pretrained``, it loads back through
``AutoTokenizer``/``AutoProcessor`` like a hub tokenizer.

This module must not import zenml.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "EOS_TOKEN",
    "IM_START",
    "PAD_TOKEN",
    "SPECIAL_TOKENS",
    "VIDEO_CORPUS",
    "make_tiny_tokenizer",
    "train_byte_level_bpe",
]

#: ChatML's special tokens, as Qwen checkpoints name them.
IM_START: Final = "<|im_start|>"
#: End of a chat turn: the token a ChatML model stops generating at.
EOS_TOKEN: Final = "<|im_end|>"
#: Qwen's document separator, used for padding (as in Qwen2 checkpoints).
PAD_TOKEN: Final = "<|endoftext|>"
SPECIAL_TOKENS: Final = (PAD_TOKEN, IM_START, EOS_TOKEN)

#: Same split regex as transformers' Qwen2Tokenizer (digits split one by one).
_QWEN2_PRETOKENIZE_REGEX: Final = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
    r"""\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Enough varied text for a few hundred merges; the domain words keep typical
# prompts short in tokens, which keeps tests fast.
_CORPUS: Final = (
    "You are a helpful assistant.",
    "The video shows a person walking into a kitchen and opening the fridge.",
    "A man picks up a red ball and throws it across the park to his dog.",
    "Then the camera pans to the left and a woman starts talking about the weather.",
    "After the interview, the crowd cheers and the band begins to play music.",
    "Before the race starts, the runners stretch and line up at the starting line.",
    "What happens at the beginning of the video? What happens at the end?",
    "Does the cooking scene happen before the dinner scene? Answer yes or no.",
    "Which event happens first: the car arrives, or the door opens?",
    "Question: What happens right after the speech? Answer: The audience claps.",
    'Reply in JSON: {"question": "...", "answer": "...", "events": [0, 1, 2]}',
    "Scene 1: a sunny beach. Scene 2: children build a sand castle. Scene 3: sunset.",
    "The narrator explains the steps, then shows the finished result on the table.",
    "In the first scene a cat sleeps; in the last scene it chases a toy mouse.",
    "Generate three temporal questions and their answers for the following captions.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 11 12 and punctuation: , . ; : ! ? ( ) [ ] { } \" '",
    "system user assistant",
)

#: Words that video-LLM prompts are made of (frame/time markers, roles of older chat
#: formats), so the expanded prompts stay short in tokens.
VIDEO_CORPUS: Final = (
    "USER: ASSISTANT: Human: A chat between a curious human and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the human's questions.",
    "Frame1: Frame2: Frame3: Frame4: Frame5: Frame6: Frame7: Frame8: video frames image",
    "Time 0.0s: Time 1.0s: Time 2.0s: Time 3.0s: Time 4.0s: Time 5.0s:",
    "Which scene comes first? What happens after the red scene? Yes. No. blue green red",
)


def train_byte_level_bpe(
    special_tokens: Sequence[str],
    *,
    vocab_size: int = 512,
    extra_corpus: Sequence[str] = VIDEO_CORPUS,
) -> Tokenizer:
    """A byte-level BPE (Qwen2's NFC normalizer and split regex) trained on a small
    built-in corpus, with ``special_tokens`` at the first ids. Deterministic."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(dict.fromkeys(special_tokens)),
        # All 256 byte symbols, so any text can be encoded.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([*_CORPUS, *extra_corpus] * 4, trainer=trainer)
    return tokenizer


def make_tiny_tokenizer(
    *,
    chat_template: str,
    eos_token: str,
    pad_token: str,
    bos_token: str | None = None,
    unk_token: str | None = None,
    add_bos_token: bool = False,
    named_tokens: Mapping[str, str] | None = None,
    other_special_tokens: Sequence[str] = (),
    vocab_size: int = 512,
    model_max_length: int = 4096,
) -> PreTrainedTokenizerFast:
    """A tiny fast tokenizer with a family's special tokens and chat template.

    Args:
        chat_template: Jinja chat template stored with the tokenizer.
        eos_token, pad_token, bos_token, unk_token: The named special tokens.
        add_bos_token: Prepend ``bos_token`` on every encode (Llama-style tokenizers).
        named_tokens: Model-specific named special tokens, e.g.
            ``{"image_token": "<image>", "video_token": "<video>"}``; they become tokenizer
            attributes (``tokenizer.video_token``, ``tokenizer.video_token_id``), which
            processors such as ``InternVLProcessor`` read, and survive ``save_pretrained``.
        other_special_tokens: Further atomic special tokens (e.g. chat markers).
        vocab_size: BPE vocabulary size target (bytes + specials + merges).
        model_max_length: Stored maximum sequence length.
    """
    from transformers import PreTrainedTokenizerFast

    named = dict(named_tokens or {})
    specials = [
        t for t in (unk_token, bos_token, eos_token, pad_token, *other_special_tokens, *named.values()) if t is not None
    ]
    specials = list(dict.fromkeys(specials))
    return PreTrainedTokenizerFast(
        tokenizer_object=train_byte_level_bpe(specials, vocab_size=vocab_size),
        bos_token=bos_token,
        eos_token=eos_token,
        pad_token=pad_token,
        unk_token=unk_token,
        add_bos_token=add_bos_token,
        add_eos_token=False,
        extra_special_tokens=named or None,
        chat_template=chat_template,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )

"""A tiny random-weight chat LM, built offline, that loads like a hub checkpoint (only
tests use it, so it lives with them).

:func:`make_tiny_chat_lm` writes a Qwen2-architecture causal LM (a few hundred
thousand random parameters) and a byte-level BPE tokenizer trained in
milliseconds on a small built-in corpus, with a ChatML chat template, into one
folder. ``AutoTokenizer.from_pretrained(folder)`` and
``AutoModelForCausalLM.from_pretrained(folder)`` load it exactly as they would a
downloaded instruct checkpoint, so the local text generator can be tested end
to end without network access or model downloads. Its replies are gibberish.

The tokenizer is :func:`timewarp.models.tiny_tokenizer.train_byte_level_bpe`'s, which
mirrors Qwen2's pipeline.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from timewarp.models.tiny_tokenizer import EOS_TOKEN, PAD_TOKEN, SPECIAL_TOKENS, train_byte_level_bpe

__all__ = ["CHATML_TEMPLATE", "make_tiny_chat_lm"]

#: ChatML as Qwen2.5-Instruct uses it, without tool calling: a default system
#: turn when the conversation has none, and ``<|im_start|>assistant\n`` for
#: ``add_generation_prompt``.
CHATML_TEMPLATE: Final = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)


def make_tiny_chat_lm(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    vocab_size: int = 512,
    hidden_size: int = 64,
    intermediate_size: int = 128,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    max_position_embeddings: int = 1024,
    initializer_range: float = 0.3,
) -> Path:
    """Write a tiny random-weight Qwen2 chat model and its tokenizer into ``out_dir``.

    Fully offline and deterministic for a given ``seed`` (the global torch RNG
    is left untouched). The folder holds ``config.json``,
    ``generation_config.json``, ``model.safetensors`` and the tokenizer files
    (with the chat template), like an instruct checkpoint from the hub.

    Args:
        out_dir: Folder to write (created if missing; existing files are overwritten).
        seed: Seed for the random weights.
        vocab_size: Target BPE vocabulary size including the 256 byte symbols
            and the 3 special tokens; the model's vocabulary matches the
            trained tokenizer exactly (may be smaller if the corpus runs out of merges).
        hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
        num_key_value_heads, max_position_embeddings: Qwen2 architecture sizes.
        initializer_range: Std of the random weights. Far above the usual 0.02
            on purpose: at 0.02 a tiny model with tied embeddings just repeats
            the last prompt token, so greedy replies would not depend on the prompt.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.
    """
    import torch
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    min_vocab = 256 + len(SPECIAL_TOKENS)
    if vocab_size < min_vocab:
        raise ValueError(f"vocab_size must be >= {min_vocab} (bytes + special tokens), got {vocab_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = PreTrainedTokenizerFast(
        # The tiny tokenizer's own corpus only (no video words), as this model has always had.
        tokenizer_object=train_byte_level_bpe(SPECIAL_TOKENS, vocab_size=vocab_size, extra_corpus=()),
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        bos_token=None,
        chat_template=CHATML_TEMPLATE,
        model_max_length=max_position_embeddings,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.save_pretrained(out)

    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        initializer_range=initializer_range,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=None,
    )
    # fork_rng: seed the weight init without changing the caller's RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config).eval()
    # Like Qwen2.5-Instruct: sampling defaults and both end tokens stop generation.
    # Callers that want greedy decoding must therefore override do_sample.
    model.generation_config = GenerationConfig(
        bos_token_id=None,
        eos_token_id=[eos_id, pad_id],
        pad_token_id=pad_id,
        do_sample=True,
        temperature=0.7,
        top_p=0.8,
        top_k=20,
    )
    model.save_pretrained(out)
    return out

"""The ``transformers`` engine: an instruction-tuned causal LM run in-process.

For clusters that serve their own model instead of calling an OpenAI-compatible
endpoint. Caching, parse retries, failure records and counters come from
:class:`~timewarp.generation.engine.Engine`; this module only generates:

* each conversation is rendered with the tokenizer's chat template
  (``add_generation_prompt=True``); control tokens that appear inside message
  text (e.g. ``<|im_end|>`` in a caption) are encoded as plain text;
* prompts are sorted by length (longest first, so an out-of-memory batch shows
  up at once) and generated ``batch_size`` at a time with left padding;
* ``temperature == 0`` means greedy decoding. Greedy decoding would repeat a
  rejected reply, so parse retries sample at :data:`RETRY_TEMPERATURE` with a
  fresh seed;
* only the new tokens are decoded, special tokens skipped;
* a batch that runs out of GPU memory is split in halves and retried; any other
  exception in a batch turns that batch's items into :class:`ChatFailure`
  records instead of stopping the run.

Sampled replies are reproducible for the same settings, inputs and batch
composition (each batch is seeded from ``seed``, the attempt and the batch
number), not across different batch sizes or hardware.

The model is loaded on first use, so a re-run that is answered entirely from
the cache never loads it. Not thread-safe: one instance drives one device.
torch and transformers are imported lazily (they are the optional ``models`` extra).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tqdm.auto import tqdm

from timewarp.generation.engine import ChatFailure, Engine, Message
from timewarp.generation.llm import LLMGenerator
from timewarp.generation.reply_cache import ResponseCache
from timewarp.models.placement import DTYPES, MachineFacts, choose_device, choose_dtype, device_map
from timewarp.seeding import stable_int

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "GENERATOR_NAME",
    "RETRY_TEMPERATURE",
    "LocalChatModel",
    "LocalLMSettings",
    "make_transformers_generator",
]

logger = logging.getLogger(__name__)

GENERATOR_NAME: Final = "transformers"

#: Sampling temperature for parse retries when the settings ask for greedy decoding.
RETRY_TEMPERATURE: Final = 0.7

_DTYPES: Final = ("auto", *DTYPES)


@dataclass(frozen=True)
class LocalLMSettings:
    """Which model to run and how to decode.

    Attributes:
        model: Hugging Face hub id (e.g. ``Qwen/Qwen2.5-7B-Instruct``) or a local folder.
        revision: Hub branch, tag or commit; ``None`` for the default branch.
        max_new_tokens: Upper bound on generated tokens per reply.
        batch_size: Prompts generated together.
        temperature: Sampling temperature; ``0`` means greedy decoding.
        seed: Seed for sampling (first attempts at ``temperature > 0`` and all retries).
        device: ``"auto"`` (``cuda`` if available, ``cuda:LOCAL_RANK`` under a launcher,
            else ``cpu``) or a torch device string.
        dtype: ``"auto"`` (bfloat16 on a CUDA device that supports it, float32 otherwise),
            ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        trust_remote_code: Allow model repos that ship their own Python code.

    ``"auto"`` follows :mod:`timewarp.models.placement`, the rule evaluation and training share.
    """

    model: str
    revision: str | None = None
    max_new_tokens: int = 512
    batch_size: int = 8
    temperature: float = 0.0
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("LocalLMSettings.model must be a hub id or a local path")
        if self.max_new_tokens < 1:
            raise ValueError(f"LocalLMSettings.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"LocalLMSettings.batch_size must be >= 1, got {self.batch_size}")
        if self.temperature < 0:
            raise ValueError(f"LocalLMSettings.temperature must be >= 0, got {self.temperature}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"LocalLMSettings.dtype must be one of {_DTYPES}, got {self.dtype!r}")
        if not self.device:
            raise ValueError("LocalLMSettings.device must be 'auto' or a torch device string")

    def resolved_device(self) -> str:
        """The torch device string ``device`` stands for on this machine."""
        if self.device != "auto":
            return self.device
        return choose_device(MachineFacts.probe())

    def resolved_dtype(self) -> str:
        """The dtype name ``dtype`` stands for on :meth:`resolved_device`."""
        if self.dtype != "auto":
            return self.dtype
        return choose_dtype(self.resolved_device(), MachineFacts.probe())


def _mix_seed(*parts: object) -> int:
    """A 63-bit seed derived from ``parts``, so batches and attempts get unrelated random streams."""
    return stable_int(*parts, bits=63)


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    # torch.cuda.OutOfMemoryError (an alias of torch.OutOfMemoryError since torch 2.5);
    # the string check catches allocator errors raised as a plain RuntimeError.
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


@dataclass(frozen=True)
class _Decoding:
    """How one generation pass samples: ``temperature == 0`` is greedy."""

    temperature: float
    seed: int


class LocalChatModel(Engine):
    """An in-process chat model as an :class:`~timewarp.generation.engine.Engine`.

    ``requests_sent`` counts prompts generated (retries included); token counts
    exclude padding.

    Args:
        settings: Model and decoding settings.
        cache: Optional persistent cache of replies, owned by the caller.
    """

    def __init__(self, settings: LocalLMSettings, cache: ResponseCache | None = None) -> None:
        super().__init__(cache)
        self.settings = settings
        self.device = settings.resolved_device()
        self.dtype = settings.resolved_dtype()
        self._model: PreTrainedModel | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._eos_token_ids: list[int] = []

    # -- loading ---------------------------------------------------------- #

    def load(self) -> None:
        """Load the tokenizer and model now (otherwise done on first generation); idempotent."""
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        s = self.settings
        # Left padding: generation appends after the last position of every row.
        tokenizer = AutoTokenizer.from_pretrained(
            s.model, revision=s.revision, trust_remote_code=s.trust_remote_code, padding_side="left"
        )
        if tokenizer.chat_template is None:
            raise ValueError(
                f"{s.model!r} has no chat template; LocalChatModel needs an instruction-tuned (chat) model"
            )
        if tokenizer.pad_token is None:
            # Llama-style tokenizers ship without one; padded positions are masked, so any id will do.
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(
            s.model,
            revision=s.revision,
            trust_remote_code=s.trust_remote_code,
            dtype=getattr(torch, self.dtype),
            # Loads the weights straight onto the device instead of via CPU memory.
            device_map=device_map(self.device),
        )
        model.eval()

        # Stop at the model's end tokens and at the tokenizer's end-of-turn token:
        # some checkpoints list only one of them in generation_config.json.
        configured = model.generation_config.eos_token_id
        eos_ids = [configured] if isinstance(configured, int) else list(configured or [])
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
            eos_ids.append(tokenizer.eos_token_id)
        self._eos_token_ids = eos_ids
        self._tokenizer = tokenizer
        self._model = model
        logger.info("loaded %s (revision=%s) on %s as %s", s.model, s.revision, self.device, self.dtype)

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The loaded tokenizer (loads the model on first access)."""
        self.load()
        assert self._tokenizer is not None
        return self._tokenizer

    @property
    def model(self) -> PreTrainedModel:
        """The loaded model (loads it on first access)."""
        self.load()
        assert self._model is not None
        return self._model

    # -- description ------------------------------------------------------ #

    def describe(self) -> dict[str, Any]:
        """The generator's identity and decoding parameters, for provenance records."""
        s = self.settings
        return {
            "generator": GENERATOR_NAME,
            "model": s.model,
            "revision": s.revision,
            "max_new_tokens": s.max_new_tokens,
            "batch_size": s.batch_size,
            "temperature": float(s.temperature),
            "seed": s.seed,
            "device": self.device,
            "dtype": self.dtype,
        }

    def cache_params(self) -> dict[str, Any]:
        """Parameters that change the reply, used in the cache key.

        ``dtype`` is included (bfloat16 and float32 greedy replies differ);
        ``batch_size`` and ``device`` are not: they change replies only by
        numerical noise. ``generator`` keeps keys apart from ChatClient's.
        """
        s = self.settings
        return {
            "generator": GENERATOR_NAME,
            "model": s.model,
            "revision": s.revision,
            # float() so that 0 and 0.0 give the same cache key.
            "temperature": float(s.temperature),
            "max_new_tokens": int(s.max_new_tokens),
            "seed": s.seed,
            "dtype": self.dtype,
        }

    # -- generation ------------------------------------------------------- #

    def _encode(self, messages: list[Message]) -> list[int]:
        encoded = self.tokenizer.apply_chat_template(
            messages,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            # Message text is data: a "<|im_end|>" inside a caption must not end the turn.
            sanitize_control_tokens=True,
        )
        return list(encoded["input_ids"])

    def _generate_batch(self, prompts: list[list[int]], decoding: _Decoding) -> list[str]:
        """Generate one reply per token-id prompt, as a single padded batch."""
        import torch

        tokenizer, model = self.tokenizer, self.model
        padded = tokenizer.pad({"input_ids": prompts}, padding=True, return_tensors="pt")
        input_ids = padded["input_ids"].to(model.device)
        attention_mask = padded["attention_mask"].to(model.device)
        sampling = decoding.temperature > 0
        # Passed as generate() kwargs, on top of the model's generation_config.json
        # (top_p, top_k, repetition_penalty, ... as with any hub checkpoint). A full
        # GenerationConfig object would make transformers warn about the model's
        # sampling defaults when we ask for greedy decoding.
        generation_kwargs: dict[str, Any] = {
            "max_new_tokens": self.settings.max_new_tokens,
            "do_sample": sampling,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": self._eos_token_ids,
        }
        if sampling:
            generation_kwargs["temperature"] = decoding.temperature

        cuda = str(model.device).startswith("cuda")
        # fork_rng: seed this batch without disturbing the caller's RNG state.
        with torch.random.fork_rng(devices=[model.device] if cuda else []), torch.inference_mode():
            torch.manual_seed(decoding.seed)
            output = model.generate(input_ids=input_ids, attention_mask=attention_mask, **generation_kwargs)
        # Left padding puts every prompt's end at the same column.
        new_tokens = output[:, input_ids.shape[1] :]
        self._count_tokens(int(attention_mask.sum()), int((new_tokens != tokenizer.pad_token_id).sum()))
        return tokenizer.batch_decode(new_tokens, skip_special_tokens=True)

    def _generate_chunk(self, prompts: list[list[int]], decoding: _Decoding) -> list[str | ChatFailure]:
        """:meth:`_generate_batch`, halving the batch on out-of-memory; other errors become failures."""
        try:
            return list(self._generate_batch(prompts, decoding))
        except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the run
            out_of_memory = _is_out_of_memory(exc)
            failure = self._failure(exc, kind="out_of_memory" if out_of_memory else "error")
        # Outside the except block, so the traceback and the tensors it holds are freed first.
        if out_of_memory:
            self._release_memory()
            if len(prompts) > 1:
                half = len(prompts) // 2
                logger.warning("out of memory with %d prompts; retrying as two halves", len(prompts))
                return self._generate_chunk(prompts[:half], decoding) + self._generate_chunk(
                    prompts[half:], decoding
                )
        logger.debug("generation failed for %d prompt(s): %s", len(prompts), failure.error)
        return [failure] * len(prompts)

    def _generate(
        self, requests: Sequence[list[Message]], attempt: int, desc: str
    ) -> Iterator[tuple[int, str | ChatFailure]]:
        """Replies batched by prompt length, yielded in input order once all are done;
        retries sample with a seed of their own."""
        s = self.settings
        if attempt == 1:
            decoding = _Decoding(float(s.temperature), s.seed)
        else:
            temperature = float(s.temperature) if s.temperature > 0 else RETRY_TEMPERATURE
            decoding = _Decoding(temperature, _mix_seed(s.seed, "retry", attempt))
        # Outside the per-item try below: a model that cannot be loaded is a setup
        # error to raise, not one failure per request.
        self.load()
        results: list[str | ChatFailure | None] = [None] * len(requests)
        prompts: dict[int, list[int]] = {}
        for index, messages in enumerate(requests):
            try:
                prompts[index] = self._encode(messages)
            except Exception as exc:  # noqa: BLE001 - e.g. a template that rejects a role
                results[index] = self._failure(exc, kind="bad_request")
        # Longest first: similar lengths share a batch (less padding), and an
        # out-of-memory batch surfaces at the start of a run, not the end.
        order = sorted(prompts, key=lambda i: len(prompts[i]), reverse=True)
        batch_size = s.batch_size
        with tqdm(total=len(requests), desc=desc, unit="prompt") as bar:
            bar.update(len(requests) - len(order))
            for batch_number, start in enumerate(range(0, len(order), batch_size)):
                batch = order[start : start + batch_size]
                seeded = _Decoding(decoding.temperature, _mix_seed(decoding.seed, batch_number))
                for index, outcome in zip(batch, self._generate_chunk([prompts[i] for i in batch], seeded)):
                    results[index] = outcome
                bar.update(len(batch))
        yield from enumerate(results)  # type: ignore[misc]  # every slot is filled above

    # -- lifecycle -------------------------------------------------------- #

    def _release_memory(self) -> None:
        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def close(self) -> None:
        """Drop the model and tokenizer and free their memory (the cache is owned by the caller)."""
        self._model = None
        self._tokenizer = None
        self._release_memory()

    def __repr__(self) -> str:
        return (
            f"LocalChatModel(model={self.settings.model!r}, device={self.device!r}, "
            f"dtype={self.dtype!r}, cache={self.cache!r})"
        )


def make_transformers_generator(
    settings: LocalLMSettings, cache_path: str | Path, *, attempts: int = 3
) -> LLMGenerator:
    """An :class:`~timewarp.generation.llm.LLMGenerator` on a local model, replies cached in ``cache_path``.

    The model loads on first use. Close the generator (or use it as a context manager)
    to free the model and the cache file.
    """
    cache = ResponseCache(cache_path)
    try:
        engine = LocalChatModel(settings, cache)
        return LLMGenerator(engine, name=GENERATOR_NAME, attempts=attempts, closers=[cache.close])
    except BaseException:
        cache.close()
        raise

"""Local chat engine: an instruction-tuned causal LM run in-process with transformers.

For clusters that serve their own model instead of calling an OpenAI-compatible
endpoint. :class:`LocalChatModel` exposes the same methods and result records
as :class:`~timewarp.generation.chat.ChatClient` (``complete``,
``complete_many``, ``generate_parsed``, ``generate_parsed_many``, the
``requests_sent`` / ``cache_hits`` counters, an optional
:class:`~timewarp.generation.chat.ResponseCache`), so the same question/answer
generator code drives either engine.

How it generates:

* each conversation is rendered with the tokenizer's chat template
  (``add_generation_prompt=True``); control tokens that appear inside message
  text (e.g. ``<|im_end|>`` in a caption) are encoded as plain text;
* prompts are sorted by length (longest first, so an out-of-memory batch shows
  up at once) and generated ``batch_size`` at a time with left padding; results
  come back in input order;
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

This module must not import zenml; torch and transformers are imported lazily
(they are the optional ``models`` extra).
"""

from __future__ import annotations

import gc
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from tqdm.auto import tqdm

from timewarp.generation.chat import (
    ChatCallError,
    ChatFailure,
    ChatReply,
    Message,
    ParseRejection,
    ResponseCache,
    make_cache_key,
)
from timewarp.models.placement import DTYPES, MachineFacts, choose_device, choose_dtype, device_map

if TYPE_CHECKING:
    from pathlib import Path

    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from timewarp.generation.config import GeneratorConfig
    from timewarp.generation.llm import LLMGenerator

__all__ = [
    "GENERATOR_NAME",
    "RETRY_TEMPERATURE",
    "LocalChatModel",
    "LocalLMSettings",
    "make_transformers_generator",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

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
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    # torch.cuda.OutOfMemoryError (an alias of torch.OutOfMemoryError since torch 2.5);
    # the string check catches allocator errors raised as a plain RuntimeError.
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _failure(exc: BaseException, kind: str = "error") -> ChatFailure:
    message = str(exc) or type(exc).__name__
    return ChatFailure(error=f"{type(exc).__name__}: {message}", kind=kind)


@dataclass(frozen=True)
class _Decoding:
    """How one generation pass samples: ``temperature == 0`` is greedy."""

    temperature: float
    seed: int


class LocalChatModel:
    """In-process chat model with the :class:`~timewarp.generation.chat.ChatClient` interface.

    Counters: ``requests_sent`` counts prompts generated (retries included),
    ``cache_hits`` requests answered from the cache, ``failures`` prompts that
    ended as :class:`ChatFailure`, ``prompt_tokens`` / ``completion_tokens``
    tokens processed (padding excluded).

    Args:
        settings: Model and decoding settings.
        cache: Optional persistent cache of replies, owned by the caller.
    """

    def __init__(self, settings: LocalLMSettings, cache: ResponseCache | None = None) -> None:
        self.settings = settings
        self.cache = cache
        self.device = settings.resolved_device()
        self.dtype = settings.resolved_dtype()
        self._model: PreTrainedModel | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._eos_token_ids: list[int] = []
        self._counters: Counter[str] = Counter()

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

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded."""
        return self._model is not None

    # -- counters and description ------------------------------------------ #

    @property
    def requests_sent(self) -> int:
        """Prompts generated (each retry counts again)."""
        return self._counters["requests_sent"]

    @property
    def cache_hits(self) -> int:
        """Requests answered from the cache without generating."""
        return self._counters["cache_hits"]

    @property
    def failures(self) -> int:
        """Prompts whose generation failed for good."""
        return self._counters["failures"]

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens fed to the model (padding excluded)."""
        return self._counters["prompt_tokens"]

    @property
    def completion_tokens(self) -> int:
        """Tokens generated (padding after an end token excluded)."""
        return self._counters["completion_tokens"]

    def stats(self) -> dict[str, int]:
        """All counters as a dict, like :meth:`ChatClient.stats`."""
        names = ("requests_sent", "cache_hits", "failures", "prompt_tokens", "completion_tokens")
        return {name: self._counters[name] for name in names}

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

    def cache_key(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The cache key of ``messages`` under this model's settings."""
        return make_cache_key(messages, self.cache_params())

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
        self._counters["prompt_tokens"] += int(attention_mask.sum())
        self._counters["completion_tokens"] += int((new_tokens != tokenizer.pad_token_id).sum())
        return tokenizer.batch_decode(new_tokens, skip_special_tokens=True)

    def _generate_chunk(self, prompts: list[list[int]], decoding: _Decoding) -> list[str | ChatFailure]:
        """:meth:`_generate_batch`, halving the batch on out-of-memory; other errors become failures."""
        try:
            return list(self._generate_batch(prompts, decoding))
        except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the run
            out_of_memory = _is_out_of_memory(exc)
            failure = _failure(exc, kind="out_of_memory" if out_of_memory else "error")
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
        self, requests: Sequence[list[Message]], decoding: _Decoding, desc: str
    ) -> list[str | ChatFailure]:
        """Reply texts for ``requests`` in input order, batched by prompt length."""
        # Outside the per-item try below: a model that cannot be loaded is a setup
        # error to raise, not one failure per request.
        self.load()
        n = len(requests)
        results: list[str | ChatFailure | None] = [None] * n
        prompts: dict[int, list[int]] = {}
        for index, messages in enumerate(requests):
            try:
                prompts[index] = self._encode(messages)
            except Exception as exc:  # noqa: BLE001 - e.g. a template that rejects a role
                results[index] = _failure(exc, kind="bad_request")
        # Longest first: similar lengths share a batch (less padding), and an
        # out-of-memory batch surfaces at the start of a run, not the end.
        order = sorted(prompts, key=lambda i: len(prompts[i]), reverse=True)
        batch_size = self.settings.batch_size
        with tqdm(total=n, desc=desc, unit="prompt") as bar:
            bar.update(n - len(order))
            for batch_number, start in enumerate(range(0, len(order), batch_size)):
                batch = order[start : start + batch_size]
                seeded = _Decoding(decoding.temperature, _mix_seed(decoding.seed, batch_number))
                self._counters["requests_sent"] += len(batch)
                for index, outcome in zip(batch, self._generate_chunk([prompts[i] for i in batch], seeded)):
                    results[index] = outcome
                bar.update(len(batch))
        self._counters["failures"] += sum(isinstance(r, ChatFailure) for r in results)
        return results  # type: ignore[return-value]  # every slot is filled above

    def _groups(self, requests: Sequence[list[Message]]) -> dict[str, list[int]]:
        """Indices of ``requests`` grouped by cache key, so duplicates are generated once.

        Without a cache every request is its own group (like ChatClient): with
        sampling, duplicate prompts may be meant to get different replies.
        """
        groups: dict[str, list[int]] = {}
        for index, messages in enumerate(requests):
            key = self.cache_key(messages) if self.cache is not None else str(index)
            groups.setdefault(key, []).append(index)
        return groups

    def _cache_get(self, key: str) -> str | None:
        return None if self.cache is None else self.cache.get(key)

    def _cache_put(self, key: str, text: str) -> None:
        if self.cache is not None:
            self.cache.put(key, text)

    @staticmethod
    def _log_failures(desc: str, results: Sequence[object]) -> None:
        kinds = Counter(r.kind for r in results if isinstance(r, ChatFailure))
        if kinds:
            failed = sum(kinds.values())
            logger.warning("%s: %d of %d requests failed: %s", desc, failed, len(results), dict(kinds))

    # -- public API (same as ChatClient) ------------------------------------ #

    def complete_many(
        self, requests: list[list[Message]], *, desc: str = "LLM calls"
    ) -> list[ChatReply | ChatFailure]:
        """One reply per request, in input order; failures become :class:`ChatFailure`.

        Replies come from the cache when possible; every generated reply is cached.
        """
        model_name = self.settings.model
        results: list[ChatReply | ChatFailure | None] = [None] * len(requests)
        todo: list[tuple[str, list[int]]] = []
        for key, indices in self._groups(requests).items():
            cached = self._cache_get(key)
            if cached is None:
                todo.append((key, indices))
                continue
            self._counters["cache_hits"] += len(indices)
            for index in indices:
                results[index] = ChatReply(text=cached, cached=True, model=model_name)

        decoding = _Decoding(float(self.settings.temperature), self.settings.seed)
        to_generate = [requests[indices[0]] for _, indices in todo]
        outcomes = self._generate(to_generate, decoding, desc) if to_generate else []
        for (key, indices), outcome in zip(todo, outcomes):
            result: ChatReply | ChatFailure
            if isinstance(outcome, ChatFailure):
                result = outcome
            else:
                result = ChatReply(text=outcome, cached=False, model=model_name)
                self._cache_put(key, outcome)
            for index in indices:
                results[index] = result
        self._log_failures(desc, results)
        return results  # type: ignore[return-value]  # every slot is filled above

    def complete(self, messages: list[Message]) -> ChatReply:
        """One reply for ``messages``.

        Raises:
            ChatCallError: generation failed.
        """
        (result,) = self.complete_many([messages], desc="LLM call")
        if isinstance(result, ChatFailure):
            raise ChatCallError(result)
        return result

    def generate_parsed_many(
        self,
        list_of_messages: list[list[Message]],
        parse: Callable[[str], T],
        attempts: int = 3,
        *,
        desc: str = "LLM calls",
    ) -> list[T | ParseRejection | ChatFailure]:
        """Generate and ``parse`` a reply per item, retrying while ``parse`` raises ValueError.

        Same semantics as :meth:`ChatClient.generate_parsed_many`: each item
        becomes the parsed value, a :class:`ParseRejection` carrying the last
        reply after ``attempts`` rejected replies, or a :class:`ChatFailure`
        (generation failed, or ``parse`` raised something other than
        ValueError). A cached reply is used only if it parses; only replies
        that parsed are cached. Retries regenerate just the rejected items,
        sampling with a seed of their own (at :data:`RETRY_TEMPERATURE` when
        the settings are greedy, since greedy decoding would repeat the reply).
        """
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        results: list[T | ParseRejection | ChatFailure | None] = [None] * len(list_of_messages)
        pending: list[tuple[str, list[int]]] = []
        for key, indices in self._groups(list_of_messages).items():
            cached = self._cache_get(key)
            if cached is not None:
                try:
                    value = parse(cached)
                except ValueError as exc:
                    # E.g. cached by complete() or under an older parser: generate again.
                    logger.debug("cached reply rejected by parser (%s); generating", type(exc).__name__)
                except Exception as exc:  # noqa: BLE001 - a parser bug is reported per item
                    for index in indices:
                        results[index] = _failure(exc)
                    continue
                else:
                    self._counters["cache_hits"] += len(indices)
                    for index in indices:
                        results[index] = value
                    continue
            pending.append((key, indices))

        s = self.settings
        last: dict[str, tuple[str, str]] = {}  # key -> (reason, reply text) of the latest rejection
        for attempt in range(1, attempts + 1):
            if not pending:
                break
            if attempt == 1:
                decoding = _Decoding(float(s.temperature), s.seed)
            else:
                temperature = float(s.temperature) if s.temperature > 0 else RETRY_TEMPERATURE
                decoding = _Decoding(temperature, _mix_seed(s.seed, "retry", attempt))
            label = desc if attempt == 1 else f"{desc} (retry {attempt - 1})"
            to_generate = [list_of_messages[indices[0]] for _, indices in pending]
            outcomes = self._generate(to_generate, decoding, label)
            still_pending: list[tuple[str, list[int]]] = []
            for (key, indices), outcome in zip(pending, outcomes):
                item: T | ChatFailure
                if isinstance(outcome, ChatFailure):
                    item = outcome
                else:
                    try:
                        item = parse(outcome)
                    except ValueError as exc:
                        last[key] = (f"{type(exc).__name__}: {exc}", outcome)
                        logger.debug("reply rejected by parser (attempt %d/%d): %s", attempt, attempts, exc)
                        still_pending.append((key, indices))
                        continue
                    except Exception as exc:  # noqa: BLE001 - a parser bug is reported per item
                        item = _failure(exc)
                    else:
                        self._cache_put(key, outcome)
                for index in indices:
                    results[index] = item
            pending = still_pending

        for key, indices in pending:
            reason, text = last[key]
            rejection = ParseRejection(
                reason=f"rejected by parser in all {attempts} attempt(s); last: {reason}", reply_text=text
            )
            for index in indices:
                results[index] = rejection
        self._log_failures(desc, results)
        return results  # type: ignore[return-value]  # every slot is filled above

    def generate_parsed(
        self, messages: list[Message], parse: Callable[[str], T], *, attempts: int = 3
    ) -> T | ParseRejection:
        """:meth:`generate_parsed_many` for one conversation.

        Raises:
            ChatCallError: generation failed (or ``parse`` raised something other than ValueError).
        """
        (result,) = self.generate_parsed_many([messages], parse, attempts, desc="LLM call")
        if isinstance(result, ChatFailure):
            raise ChatCallError(result)
        return result

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

    def __enter__(self) -> LocalChatModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"LocalChatModel(model={self.settings.model!r}, device={self.device!r}, "
            f"dtype={self.dtype!r}, cache={self.cache!r})"
        )


def make_transformers_generator(
    config: GeneratorConfig,
    seed: int,
    cache_path: str | Path,
    *,
    attempts: int = 3,
) -> LLMGenerator:
    """An :class:`~timewarp.generation.llm.LLMGenerator` on a local model, replies cached in ``cache_path``.

    The counterpart of :func:`~timewarp.generation.openai_backend.make_openai_generator`
    for ``backend: transformers``: ``config.model`` is the hub id or path,
    ``max_tokens`` / ``batch_size`` / ``temperature`` map onto :class:`LocalLMSettings`
    (device and dtype are chosen automatically). The model loads on first use. Close the
    generator (or use it as a context manager) to free the model and the cache file.
    """
    # Imported here: llm.py pulls in the prompt files, not needed by the engine alone.
    from timewarp.generation.llm import LLMGenerator

    if not config.model:
        raise ValueError("generator backend 'transformers' needs `model` (a hub id or a local path)")
    settings = LocalLMSettings(
        model=config.model,
        max_new_tokens=config.max_tokens,
        batch_size=config.batch_size,
        temperature=config.temperature,
        seed=seed,
    )
    cache = ResponseCache(cache_path)
    try:
        engine = LocalChatModel(settings, cache)
        return LLMGenerator(engine, name=GENERATOR_NAME, attempts=attempts, closers=[cache.close])
    except BaseException:
        cache.close()
        raise

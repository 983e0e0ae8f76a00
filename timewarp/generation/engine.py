"""What every text-generation engine shares: the reply cache, the parse-retry contract,
failure records and the counters.

An engine subclasses :class:`Engine` and implements only the call to its model
(:meth:`Engine._generate`), plus :meth:`Engine.cache_params` and :meth:`Engine.describe`.
The base class then provides :meth:`Engine.generate_parsed_many`, replies that must pass a
``parse`` function:

* a cached reply is used only if it parses; a reply that parses is cached as soon as the
  engine yields it, so an interrupted batch keeps it;
* a reply ``parse`` rejects (``ValueError``) is asked for again, up to ``attempts`` times,
  and never cached; what still fails becomes a :class:`ParseRejection`. Any other
  exception from ``parse`` (a parser bug) becomes a :class:`ChatFailure` of kind ``error``;
* identical conversations in one batch are generated once when there is a cache (it would
  return the same reply anyway);
* the counters in :meth:`Engine.stats`.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from timewarp.generation.reply_cache import ResponseCache, make_cache_key

__all__ = ["COUNTERS", "ChatFailure", "Engine", "Message", "ParseRejection"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: One chat message, e.g. ``{"role": "user", "content": "..."}``.
Message = dict[str, Any]

#: The counters every engine keeps (see :meth:`Engine.stats`).
COUNTERS = ("requests_sent", "cache_hits", "retries", "failures", "prompt_tokens", "completion_tokens")


@dataclass(frozen=True)
class ChatFailure:
    """A request that failed for good (after any retries the engine makes itself).

    ``kind`` says why, e.g. ``rate_limited``, ``server_error``, ``timeout``, ``connection``,
    ``bad_request``, ``auth``, ``bad_response``, ``out_of_memory`` or ``error``; ``error``
    is a human-readable message with any secret scrubbed out.
    """

    error: str
    kind: str


@dataclass(frozen=True)
class ParseRejection:
    """Every attempt produced a reply that the parse function rejected."""

    reason: str
    reply_text: str


class _Counters:
    """Thread-safe integer counters (an engine may count from worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def get(self, name: str) -> int:
        with self._lock:
            return self._values[name]


class Engine(ABC):
    """A chat model behind the shared cache, parse-retry and counter logic.

    Args:
        cache: Optional persistent cache of replies, owned by the caller.
    """

    def __init__(self, cache: ResponseCache | None = None) -> None:
        self.cache = cache
        self._counters = _Counters()

    # -- what an engine implements ------------------------------------------ #

    @abstractmethod
    def _generate(
        self, requests: Sequence[list[Message]], attempt: int, desc: str
    ) -> Iterator[tuple[int, str | ChatFailure]]:
        """Yield ``(index into requests, reply text or failure)`` once for every request,
        in any order, as soon as each is ready (so its reply is cached at once).

        ``attempt`` is 1 for first requests and counts up for parse retries (an engine
        that decodes greedily samples on retries, or it would repeat the rejected reply).
        A failure of one request is yielded as a :class:`ChatFailure`; raise only for a
        setup error that fails every request (e.g. a model that cannot be loaded). Report
        token counts with :meth:`_count_tokens`.
        """

    @abstractmethod
    def cache_params(self) -> dict[str, Any]:
        """Everything besides the messages that changes the reply: part of the cache key."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The engine's identity and reply-shaping settings, for provenance. No secrets."""

    def _redact(self, text: str) -> str:
        """``text`` with any secret the engine holds scrubbed out."""
        return text

    def close(self) -> None:
        """Release what the engine holds (the cache is owned by the caller)."""

    # -- counters ------------------------------------------------------------- #

    def _count_tokens(self, prompt: int, completion: int) -> None:
        self._counters.add("prompt_tokens", prompt)
        self._counters.add("completion_tokens", completion)

    def stats(self) -> dict[str, int]:
        """All counters (:data:`COUNTERS`): requests, cache hits, parse retries, failures
        and prompt/completion tokens, for cost reporting."""
        return {name: self._counters.get(name) for name in COUNTERS}

    # -- shared logic ----------------------------------------------------------- #

    def cache_key(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The cache key of ``messages`` under this engine's settings."""
        return make_cache_key(messages, self.cache_params())

    def _failure(self, exc: BaseException, kind: str = "error") -> ChatFailure:
        message = str(exc) or type(exc).__name__
        return ChatFailure(error=self._redact(f"{type(exc).__name__}: {message}"), kind=kind)

    def _groups(self, requests: Sequence[list[Message]]) -> dict[str, list[int]]:
        """Indices of ``requests`` by cache key, so duplicates are generated once.

        Without a cache every request is its own group: with sampling, duplicate
        prompts may be meant to get different replies.
        """
        groups: dict[str, list[int]] = {}
        for index, messages in enumerate(requests):
            key = self.cache_key(messages) if self.cache is not None else str(index)
            groups.setdefault(key, []).append(index)
        return groups

    def _run(
        self, requests: Sequence[list[Message]], attempt: int, desc: str
    ) -> Iterator[tuple[int, str | ChatFailure]]:
        self._counters.add("requests_sent", len(requests))
        for index, outcome in self._generate(requests, attempt, desc):
            if isinstance(outcome, ChatFailure):
                self._counters.add("failures")
            yield index, outcome

    @staticmethod
    def _log_failures(desc: str, results: Sequence[object]) -> None:
        kinds = Counter(r.kind for r in results if isinstance(r, ChatFailure))
        if kinds:
            failed = sum(kinds.values())
            logger.warning("%s: %d of %d requests failed: %s", desc, failed, len(results), dict(kinds))

    def generate_parsed_many(
        self,
        list_of_messages: list[list[Message]],
        parse: Callable[[str], T],
        attempts: int = 3,
        *,
        desc: str = "LLM calls",
    ) -> list[T | ParseRejection | ChatFailure]:
        """Generate and ``parse`` a reply per conversation, in input order.

        Each item becomes the parsed value, a :class:`ParseRejection` carrying the last
        reply after ``attempts`` rejected replies, or a :class:`ChatFailure` (generation
        failed, or ``parse`` raised something other than ValueError). Retries regenerate
        just the rejected items.
        """
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        results: list[T | ParseRejection | ChatFailure | None] = [None] * len(list_of_messages)

        def settle(indices: list[int], item: T | ParseRejection | ChatFailure) -> None:
            for index in indices:
                results[index] = item

        def parsed(text: str) -> T | ChatFailure:
            try:
                return parse(text)
            except ValueError:
                raise
            except Exception as exc:  # noqa: BLE001 - a parser bug is reported per item
                return self._failure(exc)

        pending: list[tuple[str, list[int]]] = []
        for key, indices in self._groups(list_of_messages).items():
            cached = None if self.cache is None else self.cache.get(key)
            if cached is None:
                pending.append((key, indices))
                continue
            try:
                value = parsed(cached)
            except ValueError as exc:
                # E.g. cached under an older parser: generate again.
                logger.debug("cached reply rejected by parser (%s); generating", type(exc).__name__)
                pending.append((key, indices))
                continue
            if not isinstance(value, ChatFailure):
                self._counters.add("cache_hits", len(indices))
            settle(indices, value)

        last: dict[str, tuple[str, str]] = {}  # key -> (reason, reply text) of the latest rejection
        for attempt in range(1, attempts + 1):
            if not pending:
                break
            if attempt > 1:
                self._counters.add("retries", len(pending))
            label = desc if attempt == 1 else f"{desc} (retry {attempt - 1})"
            rejected: list[tuple[str, list[int]]] = []
            for position, outcome in self._run([list_of_messages[i[0]] for _, i in pending], attempt, label):
                key, indices = pending[position]
                if isinstance(outcome, ChatFailure):
                    settle(indices, outcome)
                    continue
                try:
                    value = parsed(outcome)
                except ValueError as exc:
                    last[key] = (self._redact(f"{type(exc).__name__}: {exc}"), outcome)
                    logger.debug("reply rejected by parser (attempt %d/%d): %s", attempt, attempts, last[key][0])
                    rejected.append((key, indices))
                    continue
                if not isinstance(value, ChatFailure) and self.cache is not None:
                    self.cache.put(key, outcome)  # only replies that parsed, so a bad one is never served
                settle(indices, value)
            pending = sorted(rejected, key=lambda group: group[1][0])  # input order, for stable batches

        for key, indices in pending:
            reason, text = last[key]
            settle(indices, ParseRejection(f"rejected by parser in all {attempts} attempt(s); last: {reason}", text))
        self._log_failures(desc, results)
        return results  # type: ignore[return-value]  # every slot is filled above

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

"""Low-level chat-completions client for generating synthetic text.

Talks to any OpenAI-compatible ``/v1/chat/completions`` endpoint (OpenAI, vLLM,
TGI, Ollama) through the official ``openai`` client, and adds what a
data-generation batch needs on top of it:

* a persistent SQLite :class:`ResponseCache`, so a re-run or resumed run never
  pays twice for the same request (each reply is stored as soon as it arrives);
* bounded concurrency with order-preserving results and a progress bar;
* per-call failure records (:class:`ChatFailure`) instead of exceptions, so one
  bad call never stops a batch;
* parse-and-retry (:meth:`ChatClient.generate_parsed`) for replies that must
  follow a format, without caching or re-serving malformed replies.

Retries on 408/409/429/5xx, connection errors and timeouts (exponential backoff,
honouring ``retry-after-ms`` / ``Retry-After``) are left to the ``openai``
client itself (``max_retries=settings.max_retries``); this module does not add
a second retry loop around it.

The API key is never stored in :class:`ChatSettings` (only the *name* of the
environment variable holding it), never written to the cache, never logged,
and scrubbed from every error string this module produces.

This module is part of the ``timewarp`` domain library and must not import
zenml.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import openai
from tqdm.auto import tqdm

__all__ = [
    "LOCAL_PLACEHOLDER_KEY",
    "ChatCallError",
    "ChatClient",
    "ChatFailure",
    "ChatReply",
    "ChatSettings",
    "Message",
    "ParseRejection",
    "ResponseCache",
    "make_cache_key",
    "resolve_api_key",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: One chat message, e.g. ``{"role": "user", "content": "..."}``.
Message = dict[str, Any]

#: Key used for local servers (vLLM, TGI, Ollama) that do not check one; the
#: openai client refuses to start without *some* key.
LOCAL_PLACEHOLDER_KEY: Final = "EMPTY"

_REDACTED: Final = "***"


# --------------------------------------------------------------------------- #
# Settings and result records
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class ChatSettings:
    """Where and how to call the model. Holds no secrets.

    Attributes:
        base_url: Endpoint root such as ``http://127.0.0.1:8000/v1``; ``None``
            means the openai client's default (``OPENAI_BASE_URL`` or OpenAI).
        model: Model name sent in every request.
        api_key_env: NAME of the environment variable that holds the API key.
        temperature: Sampling temperature.
        max_tokens: Upper bound on generated tokens per reply.
        timeout_s: Per-HTTP-request timeout in seconds.
        max_retries: Retries the openai client makes after the first attempt
            (so at most ``max_retries + 1`` HTTP requests per call).
        concurrency: Maximum calls in flight in the ``*_many`` methods.
        seed: Sampling seed, sent only when set (not every server honours it).
    """

    base_url: str | None = None
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int = 512
    timeout_s: float = 60.0
    max_retries: int = 5
    concurrency: int = 8
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("ChatSettings.model must be a non-empty string")
        if not self.api_key_env:
            raise ValueError("ChatSettings.api_key_env must name an environment variable")
        if self.max_tokens < 1:
            raise ValueError(f"ChatSettings.max_tokens must be >= 1, got {self.max_tokens}")
        if self.timeout_s <= 0:
            raise ValueError(f"ChatSettings.timeout_s must be > 0, got {self.timeout_s}")
        if self.max_retries < 0:
            raise ValueError(f"ChatSettings.max_retries must be >= 0, got {self.max_retries}")
        if self.concurrency < 1:
            raise ValueError(f"ChatSettings.concurrency must be >= 1, got {self.concurrency}")

    def cache_params(self) -> dict[str, Any]:
        """Parameters that change the reply, used in the cache key.

        Deliberately excludes the endpoint, key, timeout and retry settings:
        they change how a reply is fetched, not what it is.
        """
        return {
            "model": self.model,
            # float() so that 0 and 0.0 give the same cache key.
            "temperature": float(self.temperature),
            "max_tokens": int(self.max_tokens),
            "seed": self.seed,
        }


@dataclass(frozen=True)
class ChatReply:
    """A model reply. ``model`` is the requested model name (also for cached replies)."""

    text: str
    cached: bool
    model: str


@dataclass(frozen=True)
class ChatFailure:
    """A call that failed for good, after the openai client's own retries.

    ``kind`` is one of ``rate_limited``, ``server_error``, ``timeout``,
    ``connection``, ``bad_request``, ``auth``, ``bad_response`` or ``error``.
    ``error`` is a human-readable message with any API key scrubbed out.
    """

    error: str
    kind: str


@dataclass(frozen=True)
class ParseRejection:
    """Every attempt produced a reply that the parse function rejected."""

    reason: str
    reply_text: str


class ChatCallError(Exception):
    """Raised by the single-call methods when the API call fails for good.

    The ``*_many`` methods return :attr:`failure` in place instead of raising.
    """

    def __init__(self, failure: ChatFailure) -> None:
        super().__init__(f"[{failure.kind}] {failure.error}")
        self.failure = failure


# --------------------------------------------------------------------------- #
# API key resolution
# --------------------------------------------------------------------------- #


def _is_loopback_url(base_url: str | None) -> bool:
    """True when ``base_url`` points at this machine (localhost, 127.0.0.0/8, ::1)."""
    if not base_url:
        return False
    try:
        host = urlsplit(base_url).hostname
    except ValueError:
        return False
    if not host:
        return False
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_api_key(
    settings: ChatSettings,
    secret_lookup: Callable[[str], str | None] | None = None,
) -> str:
    """Find the API key for ``settings`` without ever storing it in the settings.

    Order: the environment variable named by ``settings.api_key_env``, then
    ``secret_lookup(settings.api_key_env)`` (e.g. a secret-store accessor; a
    ``KeyError`` from it counts as "not found"), then, only for a loopback
    ``base_url`` (local vLLM/TGI/Ollama that need no key), the placeholder
    ``"EMPTY"``.

    Raises:
        ValueError: no key was found. The message names the variable, never a value.
    """
    name = settings.api_key_env
    key = os.environ.get(name)
    if key:
        return key
    if secret_lookup is not None:
        try:
            key = secret_lookup(name)
        except KeyError:
            key = None
        if key:
            return key
    if _is_loopback_url(settings.base_url):
        return LOCAL_PLACEHOLDER_KEY
    where = "the environment" + (" or the secret lookup" if secret_lookup is not None else "")
    raise ValueError(
        f"No API key found: {name!r} is not set in {where}. Set the environment variable "
        f"{name} (or point ChatSettings.api_key_env at the variable that holds the key); "
        "a local endpoint on localhost/127.0.0.1 needs no key."
    )


# --------------------------------------------------------------------------- #
# Persistent response cache
# --------------------------------------------------------------------------- #


def make_cache_key(messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> str:
    """sha256 hex digest of the canonical JSON of (model, messages, params)."""
    payload = {"model": params.get("model"), "messages": list(messages), "params": dict(params)}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """Thread-safe persistent cache of reply texts in one SQLite file.

    Each :meth:`put` commits immediately (autocommit, WAL journal), so replies
    survive a crash or interrupt and a resumed run finds them. Only the hashed
    key and the reply text are stored (no prompts, URLs or keys). One
    connection is shared by all threads behind a lock (writes are tiny; the
    network call dominates), and a 30 s busy timeout lets several processes
    share the same file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None -> autocommit: every put is durable on return.
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=30.0
        )
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is crash-safe for the application under WAL and avoids an fsync per reply.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS responses ("
                " key TEXT PRIMARY KEY, text TEXT NOT NULL, created REAL NOT NULL)"
            )

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"ResponseCache({str(self.path)!r}) is closed")
        return self._conn

    def get(self, key: str) -> str | None:
        """The cached reply text for ``key``, or ``None``."""
        with self._lock:
            row = self._connection().execute("SELECT text FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, text: str) -> None:
        """Store (or replace) the reply text for ``key``; durable on return."""
        with self._lock:
            self._connection().execute(
                "INSERT OR REPLACE INTO responses (key, text, created) VALUES (?, ?, ?)",
                (key, text, time.time()),
            )

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._connection().execute("SELECT COUNT(*) FROM responses").fetchone()
        return int(count)

    def close(self) -> None:
        """Close the database (idempotent); the WAL is checkpointed into the main file."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"


# --------------------------------------------------------------------------- #
# Client
# --------------------------------------------------------------------------- #


class _Counters:
    """Thread-safe integer counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def get(self, name: str) -> int:
        with self._lock:
            return self._values[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


def _classify(exc: BaseException) -> str:
    """Map an exception from the openai client onto a ChatFailure kind."""
    # Order matters: APITimeoutError subclasses APIConnectionError.
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited"
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return "auth"
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status == 408:
            return "timeout"
        return "server_error" if status >= 500 else "bad_request"
    # A 2xx reply whose body is not valid JSON / not the chat-completion schema.
    if isinstance(exc, (openai.APIResponseValidationError, json.JSONDecodeError)):
        return "bad_response"
    return "error"


class ChatClient:
    """Chat-completions client with caching, concurrency and failure records.

    Safe to share between threads. Counters (``requests_sent``, ``cache_hits``,
    ``failures``, ``prompt_tokens``, ``completion_tokens``) count logical calls
    made through this client; the openai client's internal HTTP retries are
    not counted separately.
    """

    def __init__(
        self,
        settings: ChatSettings,
        cache: ResponseCache | None = None,
        *,
        api_key: str | None = None,
        secret_lookup: Callable[[str], str | None] | None = None,
    ) -> None:
        self.settings = settings
        self.cache = cache
        key = api_key if api_key else resolve_api_key(settings, secret_lookup)
        # Kept only to scrub it from error strings; never logged or repr'd.
        self._api_key = key
        self._openai = openai.OpenAI(
            api_key=key,
            base_url=settings.base_url,
            timeout=settings.timeout_s,
            max_retries=settings.max_retries,
        )
        # Resolve the lazily-built resource once, before worker threads race to build it.
        self._completions = self._openai.chat.completions
        self._counters = _Counters()
        logger.debug(
            "ChatClient ready: model=%s base_url=%s max_retries=%d concurrency=%d cache=%s",
            settings.model,
            settings.base_url or "<client default>",
            settings.max_retries,
            settings.concurrency,
            cache.path if cache is not None else None,
        )

    # -- counters --------------------------------------------------------- #

    @property
    def requests_sent(self) -> int:
        """Calls sent to the API (each may include the openai client's retries)."""
        return self._counters.get("requests_sent")

    @property
    def cache_hits(self) -> int:
        """Calls answered from the cache without contacting the API."""
        return self._counters.get("cache_hits")

    @property
    def failures(self) -> int:
        """API calls that failed for good."""
        return self._counters.get("failures")

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens reported by the server (``usage``), summed."""
        return self._counters.get("prompt_tokens")

    @property
    def completion_tokens(self) -> int:
        """Completion tokens reported by the server (``usage``), summed."""
        return self._counters.get("completion_tokens")

    def stats(self) -> dict[str, int]:
        """All counters as a dict, for cost reporting."""
        snap = self._counters.snapshot()
        names = ("requests_sent", "cache_hits", "failures", "prompt_tokens", "completion_tokens")
        return {name: snap.get(name, 0) for name in names}

    # -- internals -------------------------------------------------------- #

    def cache_key(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The cache key of ``messages`` under this client's settings."""
        return make_cache_key(messages, self.settings.cache_params())

    def _redact(self, text: str) -> str:
        key = self._api_key
        # Skip trivial keys: scrubbing "EMPTY" would only mangle messages.
        if key and key != LOCAL_PLACEHOLDER_KEY and key in text:
            text = text.replace(key, _REDACTED)
        return text

    def _failure(self, exc: BaseException) -> ChatFailure:
        kind = _classify(exc)
        message = str(exc) or type(exc).__name__
        return ChatFailure(error=self._redact(f"{type(exc).__name__}: {message}"), kind=kind)

    def _cache_get(self, key: str) -> str | None:
        return None if self.cache is None else self.cache.get(key)

    def _cache_put(self, key: str, text: str) -> None:
        if self.cache is not None:
            self.cache.put(key, text)

    def _call_api(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """One API call (with the openai client's retries); the reply text.

        Raises:
            ChatCallError: the call failed for good or the reply had no text.
        """
        s = self.settings
        kwargs: dict[str, Any] = {
            "model": s.model,
            "messages": list(messages),
            "temperature": s.temperature,
            "max_tokens": s.max_tokens,
        }
        if s.seed is not None:
            kwargs["seed"] = s.seed
        self._counters.add("requests_sent")
        try:
            completion = self._completions.create(**kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a record
            self._counters.add("failures")
            failure = self._failure(exc)
            logger.debug("chat call failed: kind=%s error=%s", failure.kind, failure.error)
            raise ChatCallError(failure) from exc

        usage = completion.usage  # optional: not every server reports it
        if usage is not None:
            self._counters.add("prompt_tokens", int(usage.prompt_tokens or 0))
            self._counters.add("completion_tokens", int(usage.completion_tokens or 0))
        choices = completion.choices or []
        text: str | None = choices[0].message.content if choices else None
        finish_reason: str | None = choices[0].finish_reason if choices else None
        if text is None:
            # E.g. a refusal, a tool call, or a server that returned no choices.
            self._counters.add("failures")
            raise ChatCallError(
                ChatFailure(
                    error=f"reply has no text content (finish_reason={finish_reason!r})",
                    kind="bad_response",
                )
            )
        if finish_reason == "length":
            logger.debug("reply truncated at max_tokens=%d", s.max_tokens)
        return text

    def _run_many(
        self,
        items: Sequence[list[Message]],
        fn: Callable[[list[Message]], R],
        desc: str,
    ) -> list[R | ChatFailure]:
        """Run ``fn`` over ``items`` concurrently; order-preserving, never raises per item.

        With a cache, identical requests in one batch are sent once and the
        result fanned out: the cache would return the same reply anyway.
        """
        n = len(items)
        if n == 0:
            return []
        groups: dict[str, list[int]] = {}
        for index, messages in enumerate(items):
            group_key = self.cache_key(messages) if self.cache is not None else str(index)
            groups.setdefault(group_key, []).append(index)

        results: list[R | ChatFailure | None] = [None] * n
        kinds: Counter[str] = Counter()
        executor = ThreadPoolExecutor(
            max_workers=min(self.settings.concurrency, len(groups)), thread_name_prefix="chat"
        )
        try:
            futures: dict[Future[R], list[int]] = {
                executor.submit(fn, items[indices[0]]): indices for indices in groups.values()
            }
            with tqdm(total=n, desc=desc, unit="call") as bar:
                for future in as_completed(futures):
                    indices = futures[future]
                    outcome: R | ChatFailure
                    try:
                        outcome = future.result()
                    except ChatCallError as exc:
                        outcome = exc.failure
                    except Exception as exc:  # noqa: BLE001 - e.g. a bug in a parse function
                        outcome = self._failure(exc)
                        logger.debug("call raised %s", type(exc).__name__)
                    if isinstance(outcome, ChatFailure):
                        kinds[outcome.kind] += len(indices)
                    for index in indices:
                        results[index] = outcome
                    bar.update(len(indices))
        finally:
            # On Ctrl-C don't start queued calls; finished replies are already cached.
            executor.shutdown(wait=True, cancel_futures=True)

        if kinds:
            logger.warning("%s: %d of %d calls failed: %s", desc, sum(kinds.values()), n, dict(kinds))
        return results  # type: ignore[return-value]  # every slot is filled above

    # -- public API ------------------------------------------------------- #

    def complete(self, messages: list[Message]) -> ChatReply:
        """One reply for ``messages``, from the cache when possible.

        Every successful reply is cached.

        Raises:
            ChatCallError: the call failed for good (after the client's retries).
        """
        key = self.cache_key(messages)
        cached = self._cache_get(key)
        if cached is not None:
            self._counters.add("cache_hits")
            return ChatReply(text=cached, cached=True, model=self.settings.model)
        text = self._call_api(messages)
        self._cache_put(key, text)  # written now, so an interrupted batch keeps it
        return ChatReply(text=text, cached=False, model=self.settings.model)

    def complete_many(
        self, requests: list[list[Message]], *, desc: str = "LLM calls"
    ) -> list[ChatReply | ChatFailure]:
        """:meth:`complete` for each request, up to ``settings.concurrency`` at once.

        Results are in input order; a call that fails for good becomes a
        :class:`ChatFailure` instead of raising.
        """
        return self._run_many(requests, self.complete, desc)

    def generate_parsed(
        self,
        messages: list[Message],
        parse: Callable[[str], T],
        *,
        attempts: int = 3,
    ) -> T | ParseRejection:
        """Call the model and ``parse`` the reply, retrying while ``parse`` raises ValueError.

        A cached reply is used only if it parses. Retries always make a fresh
        API call, and only a reply that parsed is cached, so a malformed reply
        is never served again. Note that at temperature 0 a server may well
        repeat the same malformed reply.

        Returns:
            The parsed value, or a :class:`ParseRejection` with the last reply
            after ``attempts`` rejected replies.

        Raises:
            ChatCallError: an API call failed for good.
        """
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        key = self.cache_key(messages)
        cached = self._cache_get(key)
        if cached is not None:
            try:
                value = parse(cached)
            except ValueError as exc:
                # E.g. cached by plain complete() or under an older parser: refetch.
                logger.debug("cached reply rejected by parser (%s); calling the API", type(exc).__name__)
            else:
                self._counters.add("cache_hits")
                return value

        reason, text = "", ""
        for attempt in range(1, attempts + 1):
            text = self._call_api(messages)
            try:
                value = parse(text)
            except ValueError as exc:
                reason = self._redact(f"{type(exc).__name__}: {exc}")
                logger.debug("reply rejected by parser (attempt %d/%d): %s", attempt, attempts, reason)
                continue
            self._cache_put(key, text)
            return value
        return ParseRejection(
            reason=f"rejected by parser in all {attempts} attempt(s); last: {reason}",
            reply_text=text,
        )

    def generate_parsed_many(
        self,
        list_of_messages: list[list[Message]],
        parse: Callable[[str], T],
        attempts: int = 3,
        *,
        desc: str = "LLM calls",
    ) -> list[T | ParseRejection | ChatFailure]:
        """:meth:`generate_parsed` for each item, concurrently and in input order.

        Each item becomes the parsed value, a :class:`ParseRejection` or a
        :class:`ChatFailure` (an exception other than ValueError raised by
        ``parse`` also becomes a ChatFailure of kind ``error``).
        """
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")

        def one(messages: list[Message]) -> T | ParseRejection:
            return self.generate_parsed(messages, parse, attempts=attempts)

        return self._run_many(list_of_messages, one, desc)

    # -- lifecycle -------------------------------------------------------- #

    def close(self) -> None:
        """Close the HTTP connection pool (the cache is owned by the caller)."""
        self._openai.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        # Hand-written so neither the key nor the openai client's internals show.
        return (
            f"ChatClient(model={self.settings.model!r}, base_url={self.settings.base_url!r}, "
            f"cache={self.cache!r})"
        )

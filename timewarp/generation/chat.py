"""The ``openai`` engine: any OpenAI-compatible ``/v1/chat/completions`` endpoint (OpenAI,
vLLM, TGI, Ollama) through the official ``openai`` client, with bounded concurrency.

Caching, parse retries, failure records and counters come from
:class:`~timewarp.generation.engine.Engine`. Retries on 408/409/429/5xx, connection
errors and timeouts (exponential backoff, honouring ``retry-after-ms`` /
``Retry-After``) are left to the ``openai`` client itself
(``max_retries=settings.max_retries``); this module adds no second loop around it.

The API key is never stored in :class:`ChatSettings` (only the *name* of the
environment variable holding it), never written to the cache, never logged,
and scrubbed from every error string this module produces.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import openai
from tqdm.auto import tqdm

from timewarp.generation.engine import ChatFailure, Engine, Message
from timewarp.generation.reply_cache import ResponseCache

__all__ = ["LOCAL_PLACEHOLDER_KEY", "ChatClient", "ChatSettings", "resolve_api_key"]

logger = logging.getLogger(__name__)

#: Key used for local servers (vLLM, TGI, Ollama) that do not check one; the
#: openai client refuses to start without *some* key.
LOCAL_PLACEHOLDER_KEY: Final = "EMPTY"

_REDACTED: Final = "***"


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
        concurrency: Maximum calls in flight at once.
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


def _safe_url(url: str) -> str:
    """``url`` without user info, query or fragment (where credentials could hide)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


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


class ChatClient(Engine):
    """An OpenAI-compatible endpoint as an :class:`~timewarp.generation.engine.Engine`.

    Up to ``settings.concurrency`` requests are in flight at once. ``requests_sent``
    counts logical calls; the openai client's internal HTTP retries are not counted
    separately. Token counts are the server's ``usage``, where it reports one.
    """

    def __init__(
        self,
        settings: ChatSettings,
        cache: ResponseCache | None = None,
        *,
        api_key: str | None = None,
        secret_lookup: Callable[[str], str | None] | None = None,
    ) -> None:
        super().__init__(cache)
        self.settings = settings
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

    def cache_params(self) -> dict[str, Any]:
        return self.settings.cache_params()

    def describe(self) -> dict[str, Any]:
        """The reply-shaping settings, for artifact metadata. No secrets: ChatSettings
        holds none, and the URL loses any user info or query."""
        s = self.settings
        # Mirrors the openai client's own default when no base_url is set.
        base_url = s.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        return {
            "model": s.model,
            "base_url": _safe_url(base_url),
            "temperature": s.temperature,
            "max_tokens": s.max_tokens,
            "seed": s.seed,
            "concurrency": s.concurrency,
        }

    def _redact(self, text: str) -> str:
        key = self._api_key
        # Skip trivial keys: scrubbing "EMPTY" would only mangle messages.
        if key and key != LOCAL_PLACEHOLDER_KEY and key in text:
            text = text.replace(key, _REDACTED)
        return text

    def _call_api(self, messages: list[Message]) -> str | ChatFailure:
        """One API call (with the openai client's retries): the reply text or why there is none."""
        s = self.settings
        kwargs: dict[str, Any] = {
            "model": s.model,
            "messages": list(messages),
            "temperature": s.temperature,
            "max_tokens": s.max_tokens,
        }
        if s.seed is not None:
            kwargs["seed"] = s.seed
        try:
            completion = self._completions.create(**kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a record
            failure = self._failure(exc, _classify(exc))
            logger.debug("chat call failed: kind=%s error=%s", failure.kind, failure.error)
            return failure
        usage = completion.usage  # optional: not every server reports it
        if usage is not None:
            self._count_tokens(int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0))
        choices = completion.choices or []
        text: str | None = choices[0].message.content if choices else None
        finish_reason: str | None = choices[0].finish_reason if choices else None
        if text is None:
            # E.g. a refusal, a tool call, or a server that returned no choices.
            reason = f"reply has no text content (finish_reason={finish_reason!r})"
            return ChatFailure(error=reason, kind="bad_response")
        if finish_reason == "length":
            logger.debug("reply truncated at max_tokens=%d", s.max_tokens)
        return text

    def _generate(
        self, requests: Sequence[list[Message]], attempt: int, desc: str
    ) -> Iterator[tuple[int, str | ChatFailure]]:
        # At temperature 0 a server may well repeat a rejected reply; retries ask again all the same.
        if not requests:
            return
        workers = min(self.settings.concurrency, len(requests))
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chat")
        try:
            futures = {executor.submit(self._call_api, messages): index for index, messages in enumerate(requests)}
            with tqdm(total=len(requests), desc=desc, unit="call") as bar:
                for future in as_completed(futures):
                    yield futures[future], future.result()
                    bar.update(1)
        finally:
            # On Ctrl-C don't start queued calls; finished replies are already cached.
            executor.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        """Close the HTTP connection pool (the cache is owned by the caller)."""
        self._openai.close()

    def __repr__(self) -> str:
        # Hand-written so neither the key nor the openai client's internals show.
        return f"ChatClient(model={self.settings.model!r}, base_url={self.settings.base_url!r}, cache={self.cache!r})"

"""The ``openai`` text generator: :class:`LLMGenerator` on an OpenAI-compatible endpoint
(OpenAI itself, or a local vLLM/TGI/Ollama server), with a persistent response cache so a
re-run or resumed run never pays twice for the same request."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from timewarp.generation.chat import ChatClient, ChatSettings
from timewarp.generation.llm import LLMGenerator
from timewarp.generation.reply_cache import ResponseCache

__all__ = ["GENERATOR_NAME", "make_openai_generator"]

GENERATOR_NAME = "openai"


def make_openai_generator(
    settings: ChatSettings,
    cache_path: str | Path,
    secret_lookup: Callable[[str], str | None] | None = None,
    *,
    attempts: int = 3,
) -> LLMGenerator:
    """A generator calling ``settings.base_url`` with replies cached in ``cache_path``.

    The API key is resolved by :func:`~timewarp.generation.chat.resolve_api_key` (the
    environment variable named by ``settings.api_key_env``, then ``secret_lookup``) and
    lives only inside the client. Close the generator (or use it as a context manager)
    to release the HTTP pool and the cache file.

    Raises:
        ValueError: no API key was found for a non-local endpoint.
    """
    cache = ResponseCache(cache_path)
    try:
        client = ChatClient(settings, cache, secret_lookup=secret_lookup)
    except BaseException:
        cache.close()
        raise
    return LLMGenerator(client, name=GENERATOR_NAME, attempts=attempts, closers=[cache.close])

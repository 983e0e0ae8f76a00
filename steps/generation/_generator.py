"""Building the configured text generator inside a step."""

from __future__ import annotations

from zenml import get_step_context, log_metadata

from timewarp.generation.config import GeneratorConfig, make_generator
from timewarp.generation.records import TextGenerator


def step_generator(config: GeneratorConfig, seed: int) -> TextGenerator:
    """The generator, with API keys looked up in the ZenML secret ``api_key_secret`` when
    the environment does not hold them."""
    lookup = None
    if config.api_key_secret:
        secret_name = config.api_key_secret

        def lookup(key: str) -> str | None:
            from zenml.client import Client

            values = Client().get_secret(secret_name).secret_values
            return values.get(key) or values.get("api_key")

    return make_generator(config, seed, secret_lookup=lookup)


def corpus_uri() -> str:
    """Where the step's input corpus lives in the artifact store (items refer to it)."""
    return get_step_context().inputs["corpus"][0].uri


def log_generation_stats(backend: TextGenerator) -> None:
    """The backend's call counters (requests, cache hits, retries, prompt/completion tokens)
    as step metadata, where it calls a model."""
    stats = backend.stats()
    if stats:
        log_metadata({"generation": stats})

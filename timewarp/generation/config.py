"""Choosing a text generator in config, without code changes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from timewarp.generation.records import TextGenerator

SecretLookup = Callable[[str], "str | None"]


class GeneratorConfig(BaseModel):
    """Which backend writes questions and answers, and how.

    ``template`` needs nothing else. ``openai`` talks to any OpenAI-compatible endpoint
    (``base_url``; the key is read from the environment variable ``api_key_env`` or, when
    unset there, from the ZenML secret ``api_key_secret``). ``transformers`` runs a local
    instruction-tuned model (``model``: hub id or path).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["template", "openai", "transformers"] = "template"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    api_key_secret: str | None = None
    temperature: float = 0.0
    max_tokens: int = 512
    concurrency: int = 8
    max_retries: int = 5
    timeout_s: float = 60.0
    batch_size: int = 8
    # Where LLM replies are cached (SQLite); on a cluster, a persistent volume.
    cache_dir: str = ".timewarp/llm-cache"
    # Template backend: the question types it writes, for training and benchmark (None: all).
    question_types: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _check_question_types(self) -> "GeneratorConfig":
        if self.question_types is None:
            return self
        if self.backend != "template":
            raise ValueError("question_types applies to the template backend only")
        from timewarp.generation.template import TemplateGenerator

        TemplateGenerator(question_types=self.question_types)  # raises on unknown types, at config time
        return self


def make_generator(config: GeneratorConfig, seed: int, secret_lookup: SecretLookup | None = None) -> TextGenerator:
    """The generator ``config`` names; an engine's settings are mapped from ``config`` here."""
    # Imported per backend: openai, torch and transformers load only when chosen.
    if config.backend == "template":
        from timewarp.generation.template import TemplateGenerator

        return TemplateGenerator(seed=seed, question_types=config.question_types)
    if not config.model:
        raise ValueError(f"generator backend {config.backend!r} needs `model` (a model name, hub id or local path)")
    cache_dir = Path(config.cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache_file = cache_dir / f"{config.backend}.sqlite"
    if config.backend == "openai":
        from timewarp.generation.chat import ChatSettings
        from timewarp.generation.openai_backend import make_openai_generator

        settings = ChatSettings(
            base_url=config.base_url,
            model=config.model,
            api_key_env=config.api_key_env,
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            timeout_s=config.timeout_s,
            max_retries=config.max_retries,
            concurrency=config.concurrency,
            seed=seed,
        )
        return make_openai_generator(settings, cache_file, secret_lookup=secret_lookup)
    from timewarp.generation.transformers_backend import LocalLMSettings, make_transformers_generator

    # Device and dtype are chosen automatically (timewarp.models.placement).
    local = LocalLMSettings(
        model=config.model,
        max_new_tokens=config.max_tokens,
        batch_size=config.batch_size,
        temperature=config.temperature,
        seed=seed,
    )
    return make_transformers_generator(local, cache_file)

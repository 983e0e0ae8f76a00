"""Versioned prompt templates for the LLM text generators.

Each prompt is a markdown file ``<name>_<version>.md`` in this package with two sections,
introduced by the lines ``## system`` and ``## user`` (anything before the first section,
such as an HTML comment describing the prompt, is ignored). Placeholders are written
``{name}`` as in ``str.format``; every other brace is literal, so the JSON examples in the
prompts need no doubled braces. Changing a prompt's meaning means a new version file and a
new :data:`PROMPT_VERSION`, so cached replies and artifacts never mix prompts.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = ["PROMPT_NAMES", "PROMPT_VERSION", "PromptTemplate", "load_prompt", "prompt_fingerprint"]

PROMPT_VERSION = "v1"
PROMPT_NAMES = ("qa", "answer_shuffled", "mcq", "mcq_shuffled")

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECTION = re.compile(r"^## (system|user)[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt: a system text and a user text with ``{placeholders}``."""

    name: str
    version: str
    system: str
    user: str

    @property
    def placeholders(self) -> frozenset[str]:
        return frozenset(_PLACEHOLDER.findall(self.system) + _PLACEHOLDER.findall(self.user))

    def render(self, **values: Any) -> list[dict[str, Any]]:
        """Chat messages (system, user) with every placeholder filled.

        Raises:
            KeyError: a placeholder has no value, or a value has no placeholder (a typo
                that would otherwise silently drop information from the prompt).
        """
        missing = self.placeholders - values.keys()
        unused = values.keys() - self.placeholders
        if missing or unused:
            raise KeyError(
                f"prompt {self.name}_{self.version}: missing values {sorted(missing)}, "
                f"unknown values {sorted(unused)}"
            )

        def fill(text: str) -> str:
            # One pass, so a value that itself contains "{x}" is never expanded again.
            return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)

        return [
            {"role": "system", "content": fill(self.system)},
            {"role": "user", "content": fill(self.user)},
        ]


def _parse(name: str, version: str, text: str) -> PromptTemplate:
    parts = _SECTION.split(text)
    # parts = [preamble, "system", body, "user", body]
    sections = dict(zip(parts[1::2], (body.strip() for body in parts[2::2])))
    if len(parts) != 5 or set(sections) != {"system", "user"}:
        raise ValueError(f"prompt {name}_{version}: needs exactly one '## system' and one '## user' section")
    return PromptTemplate(name=name, version=version, system=sections["system"], user=sections["user"])


@functools.cache
def load_prompt(name: str, version: str = PROMPT_VERSION) -> PromptTemplate:
    """The template ``<name>_<version>.md`` shipped in this package."""
    resource = resources.files(__package__).joinpath(f"{name}_{version}.md")
    if not resource.is_file():
        raise FileNotFoundError(f"no prompt {name!r} in version {version!r} ({resource})")
    return _parse(name, version, resource.read_text(encoding="utf-8"))


@functools.cache
def prompt_fingerprint(version: str = PROMPT_VERSION) -> str:
    """Short sha256 over all prompts of ``version``: shows an edit made without a version bump."""
    digest = hashlib.sha256()
    for name in PROMPT_NAMES:
        prompt = load_prompt(name, version)
        digest.update(f"{name}\0{prompt.system}\0{prompt.user}\0".encode())
    return digest.hexdigest()[:16]

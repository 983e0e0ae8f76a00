"""The one rule for "these two texts say the same": duplicate and equality checks in
generation and in the data-quality report use it, so both agree on what a duplicate is."""

from __future__ import annotations

import re

__all__ = ["normalise_text"]

_NOT_WORD = re.compile(r"[\W_]+")


def normalise_text(text: str) -> str:
    """Lower case, with punctuation, underscores and runs of white space made single spaces."""
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())

"""Reading the chosen option out of a generated answer, the way lmms-eval does for MCQs:
a letter alone, "B.", "(B)", "B) ...", "Answer: B", or the option text itself."""

from __future__ import annotations

import re

from timewarp.generation.records import OPTION_LETTERS
from timewarp.text import normalise_text

# A letter at the start followed by a separator or the end: "B", "B.", "(B)", "D) text".
_LEAD = re.compile(r"^\s*[\(\[]?([A-D])\s*(?:[\)\].:,]|$)", re.IGNORECASE)
# "Answer: B", "The answer is (B)", "correct option is B".
_STATED = re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*[\(\[]?([A-D])\b", re.IGNORECASE)
# "B is correct": a letter and a space; not "A", which is usually the article.
_LEAD_WORD = re.compile(r"^\s*([B-D])\s")


def extract_option(reply: str, options: list[str]) -> int | None:
    """Index of the option a reply picks, or None when it picks none (or several)."""
    letters = OPTION_LETTERS[: len(options)]

    def pick(match: re.Match | None) -> int | None:
        if match and match.group(1).upper() in letters:
            return letters.index(match.group(1).upper())
        return None

    text = reply.strip()
    if not text:
        return None
    for found in (pick(_LEAD.match(text)), pick(_STATED.search(text))):
        if found is not None:
            return found
    said = normalise_text(text)
    hits = [k for k, option in enumerate(options) if normalise_text(option) and normalise_text(option) in said]
    if len(hits) == 1:
        return hits[0]
    if hits:
        return None  # several option texts: no single pick
    return pick(_LEAD_WORD.match(text))

"""Seeds and random streams derived from names, the same on every run, machine and process.

``hash()`` is salted per process; sha256 of the parts joined by NUL is not, and the NUL
keeps ("ab", "c") apart from ("a", "bc").
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["stable_int", "stable_rng"]


def stable_int(*parts: object, bits: int = 128) -> int:
    """A non-negative integer below ``2**bits`` derived from ``str(part)`` of each part."""
    if not 1 <= bits <= 256:
        raise ValueError(f"bits must be between 1 and 256, got {bits}")
    digest = hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()
    size = -(-bits // 8)
    return int.from_bytes(digest[:size], "little") >> (8 * size - bits)


def stable_rng(*parts: object) -> np.random.Generator:
    """A numpy generator seeded with :func:`stable_int` of ``parts``."""
    return np.random.default_rng(stable_int(*parts))

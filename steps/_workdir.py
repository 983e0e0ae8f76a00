"""Scratch folders for step outputs before their materializer stores them."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path


def scratch_dir(prefix: str) -> Path:
    """A new temporary folder, removed when the process exits (the artifact store keeps
    the copy the materializer made)."""
    path = Path(tempfile.mkdtemp(prefix=f"timewarp-{prefix}-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path

"""A corpus's files kept in a remote store and copied into a local folder on first use.

A training or evaluation process then downloads the frames it reads, not every original
video of the corpus. The copy itself is a callable the caller provides (the ZenML
materializer passes one that goes through the artifact store and its credentials), so
this library needs no storage client of its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

# fetch(path relative to the remote folder, local destination file): copies that one file.
MediaFetch = Callable[[str, Path], None]

# Locks by hash of the file name: bounded memory however many files a corpus has.
_LOCK_STRIPES = 64


class CorpusMediaError(RuntimeError):
    """A corpus file could not be fetched or read."""


class RemoteMedia:
    """Where the files missing from a corpus's local folder come from.

    Each file is fetched once: threads asking for the same file wait for the one copy.
    A file is written under a temporary name and renamed when complete, so no reader, in
    this or another process sharing the folder, ever sees part of one. Picklable when
    ``fetch`` is (the locks are made anew), so processes started by torchrun, which get
    the corpus pickled, fetch into the same local folder.
    """

    def __init__(self, location: str, fetch: MediaFetch):
        self.location = location  # the remote folder, for messages
        self.fetch = fetch
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]

    def __getstate__(self) -> dict[str, Any]:
        return {"location": self.location, "fetch": self.fetch}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def ensure(self, relative: str, local: Path) -> None:
        """Copy the remote ``relative`` file to ``local`` unless it is already there."""
        if local.exists():
            return
        with self._locks[hash(relative) % _LOCK_STRIPES]:
            if local.exists():
                return
            local.parent.mkdir(parents=True, exist_ok=True)
            partial = local.with_name(f".{local.name}.{os.getpid()}-{threading.get_ident()}.part")
            try:
                self.fetch(relative, partial)
                os.replace(partial, local)
            except Exception as error:  # storage clients raise many kinds; each is reported
                partial.unlink(missing_ok=True)
                raise CorpusMediaError(
                    f"could not fetch {relative!r} of the corpus stored at {self.location}: "
                    f"{type(error).__name__}: {error}. Check that the artifact store is reachable with its "
                    "credentials; if the file is gone, re-run the step that produced the corpus."
                ) from error

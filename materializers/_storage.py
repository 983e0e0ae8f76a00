"""Moving artifact folders between a local working folder and any artifact store."""

from __future__ import annotations

import os
import pickle
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zenml.io import fileio
from zenml.utils import io_utils

if TYPE_CHECKING:
    from zenml.artifact_stores import BaseArtifactStore

_COPY_CHUNK = 1 << 20


def upload_folder(local_dir: str | os.PathLike, uri: str, exclude: Callable[[str], bool] | None = None) -> None:
    """Copy a local folder's contents into the artifact URI (any artifact store), without
    the files and folders, at any depth, whose name ``exclude`` accepts."""
    fileio.makedirs(uri)
    if exclude is None:
        io_utils.copy_dir(str(local_dir), uri, overwrite=True)
        return
    for entry in sorted(os.scandir(local_dir), key=lambda entry: entry.name):
        if exclude(entry.name):
            continue
        target = os.path.join(uri, entry.name)
        if entry.is_dir():
            upload_folder(entry.path, target, exclude)
        else:
            fileio.copy(entry.path, target, overwrite=True)


def is_local(uri: str) -> bool:
    return not io_utils.is_remote(uri) and os.path.isdir(uri)


class ArtifactFileFetch:
    """Copies one file of an artifact folder to a local file through the artifact store
    holding it, so the store's credentials stay with ZenML. Pickles as the artifact URI and
    the store's id, never credentials: a process that unpickles it (a torchrun worker) loads
    the store from ZenML by that id on its first fetch."""

    def __init__(self, uri: str, artifact_store: BaseArtifactStore):
        self.uri = uri.rstrip("/")
        self.artifact_store_id = artifact_store.id
        self._store: BaseArtifactStore | None = artifact_store
        self._store_pid = os.getpid()
        self._store_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"uri": self.uri, "artifact_store_id": self.artifact_store_id}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._store = None
        self._store_pid = os.getpid()
        self._store_lock = threading.Lock()

    def _artifact_store(self) -> BaseArtifactStore:
        with self._store_lock:
            if self._store is None:
                from zenml.artifacts.utils import load_artifact_store

                self._store = load_artifact_store(self.artifact_store_id)
            elif self._store_pid != os.getpid():
                # A forked process (a DataLoader worker) inherits the store's storage client,
                # which is not fork-safe (fsspec refuses it); a copy made in memory opens its
                # own client with the same settings, without asking ZenML's server again.
                self._store = pickle.loads(pickle.dumps(self._store))
            self._store_pid = os.getpid()
            return self._store

    def __call__(self, relative: str, destination: Path) -> None:
        with self._artifact_store().open(f"{self.uri}/{relative}", "rb") as source, open(destination, "wb") as target:
            shutil.copyfileobj(source, target, _COPY_CHUNK)

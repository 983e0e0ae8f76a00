"""Moving artifact folders between a local working folder and any artifact store."""

from __future__ import annotations

import os

from zenml.io import fileio
from zenml.utils import io_utils


def upload_folder(local_dir: str | os.PathLike, uri: str) -> None:
    """Copy a local folder's contents into the artifact URI (any artifact store)."""
    fileio.makedirs(uri)
    io_utils.copy_dir(str(local_dir), uri, overwrite=True)


def is_local(uri: str) -> bool:
    return not io_utils.is_remote(uri) and os.path.isdir(uri)

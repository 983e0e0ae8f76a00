"""Test set-up: an isolated ZenML home (set before zenml is imported) and shared data."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

_ZENML_HOME = tempfile.mkdtemp(prefix="timewarp-tests-zenml-")
atexit.register(shutil.rmtree, _ZENML_HOME, ignore_errors=True)
os.environ["ZENML_CONFIG_PATH"] = _ZENML_HOME
os.environ["ZENML_ANALYTICS_OPT_IN"] = "false"
os.environ.setdefault("ZENML_LOGGING_VERBOSITY", "WARN")
os.environ.setdefault("TQDM_DISABLE", "1")

import pytest  # noqa: E402

from timewarp.data.sample import make_sample  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    """A small generated FineVideo-format folder (12 videos, 2 shards), shared read-only."""
    root = tmp_path_factory.mktemp("finevideo")
    make_sample(root, videos=12, seed=7)
    return root


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory):
    """The project's local stack (MLflow tracker + registry) in the isolated ZenML store,
    with its MLflow tracking store in a temporary folder; yields (tracking URI, folder)."""
    from infra.local_stack import ensure_local_stack, other_store_in_this_checkout

    with other_store_in_this_checkout():
        folder = tmp_path_factory.mktemp("mlflow")
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        ensure_local_stack(uri, folder / "artifacts")
        yield uri, folder

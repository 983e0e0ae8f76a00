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


@pytest.fixture(scope="session")
def explicit_runs(local_stack, tmp_path_factory) -> list:
    """Three ``timewarp_explicit`` runs on the local stack, oldest first, shared by the
    pipeline tests and the browser tests (one set of runs per session): the default (its SFT
    stage to a validation plateau) with a
    control arm, the same again (cached), and one on a changed benchmark whose gate
    promotes a candidate no worse than the champion by 99 points, scoring both on a local
    TVBench folder after registration."""
    import yaml
    from zenml.client import Client

    from infra.local_stack import ensure_local_stack
    from pipelines.timewarp_explicit import timewarp_explicit

    uri, folder = local_stack
    ensure_local_stack(uri, folder / "artifacts")  # idempotent; an earlier test may have switched stacks
    tmp = tmp_path_factory.mktemp("explicit")
    parameters = {
        "sample_videos": 10, "checkpoint_root": str(tmp / "checkpoints"),
        "recipe_overrides": {"max_steps": 3, "save_steps": 10, "logging_steps": 1},
        "registered_model_name": "timewarp-e2e", "control": "sft_continue",
    }
    # The third run: other benchmark items (same videos and training data, so training is
    # cached), and the public-benchmark switch on: the trained model and the champion on a
    # local TVBench-layout folder after registration.
    from timewarp.evaluation.lmms.miniatures import TVBENCH_TASKS, write_tvbench_miniature

    write_tvbench_miniature(tmp / "tvbench", items_per_task=1, tasks=tuple(TVBENCH_TASKS))
    changed = {**parameters, "mcq_per_video": 1, "control": None, "gate_margin": -0.99,
               "public_benchmarks": ["tvbench"], "benchmark_roots": {"tvbench": str(tmp / "tvbench")},
               "public_benchmark_limit": 1}
    for number, values in enumerate((parameters, parameters, changed)):
        config = tmp / f"run{number}.yaml"
        config.write_text(yaml.safe_dump({"parameters": values}))
        timewarp_explicit.with_options(config_path=str(config))()
    pipeline_runs = Client().get_pipeline("timewarp_explicit").runs
    return sorted(pipeline_runs, key=lambda r: r.created)[-3:]

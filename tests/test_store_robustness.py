"""The checkout's ZenML store survives a plain ``zenml`` call: ZenML keeps one active stack
per checkout (``.zen/config.yaml``) for every store used from it, so a ``zenml`` run without
the activate script (another store) rewrites it; the documented run then activates the
project's stack again instead of failing with "no experiment tracker"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


@pytest.fixture
def scratch_checkout(local_stack, tmp_path):
    """A checkout of its own (``.zen/`` in a temporary folder) as the Client's repository
    root, with the project's stack made active in it the way ``make stack`` does; the
    test store is the session's (conftest), the user's checkout is left alone."""
    from zenml.client import Client

    from infra.local_stack import ensure_local_stack

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    Client.initialize(root=checkout)
    saved = Client._global_client
    Client._reset_instance(Client(root=checkout))
    try:
        uri, folder = local_stack
        ensure_local_stack(uri, folder / "artifacts")
        yield checkout
    finally:
        Client._reset_instance(saved)


def _active_stack_id(checkout: Path) -> str:
    return yaml.safe_load((checkout / ".zen" / "config.yaml").read_text())["active_stack_id"]


def test_a_plain_zenml_call_leaves_the_documented_run_working(scratch_checkout, local_stack, tmp_path, capsys):
    from zenml.client import Client

    from infra.local_stack import STACK, ensure_local_stack
    from pipelines.timewarp_explicit import timewarp_explicit

    ours = Client().get_stack(STACK).id
    assert _active_stack_id(scratch_checkout) == str(ours)

    # The user's mistake: the venv's zenml without the activate script (no ZENML_CONFIG_PATH:
    # ZenML's default store under the home folder).
    env = {key: value for key, value in os.environ.items() if key not in ("ZENML_CONFIG_PATH", "XDG_CONFIG_HOME")}
    env.update(HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    zenml = Path(sys.executable).parent / "zenml"
    listed = subprocess.run([str(zenml), "stack", "list"], cwd=scratch_checkout, env=env, capture_output=True,
                            text=True, timeout=300)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert _active_stack_id(scratch_checkout) != str(ours)  # what broke the documented run before

    # The documented run, as a new process starts it: a fresh client over the checkout (which
    # falls back to this store's default stack), then the pipeline's composition with its
    # preflight, all that `zenml pipeline run timewarp_explicit` does before the first step.
    Client._reset_instance(Client(root=scratch_checkout))
    assert Client().active_stack_model.name == "default"
    timewarp_explicit.prepare()
    assert Client().active_stack_model.name == STACK
    assert Client().active_stack.experiment_tracker is not None
    assert _active_stack_id(scratch_checkout) == str(ours)  # persisted for the next command
    out = capsys.readouterr().out
    assert f"activated '{STACK}' again" in out and "source .venv/bin/activate" in out

    # `make stack` stays idempotent: the same stack, still active.
    uri, folder = local_stack
    ensure_local_stack(uri, folder / "artifacts")
    assert Client().get_stack(STACK).id == ours and _active_stack_id(scratch_checkout) == str(ours)


def test_a_chosen_stack_without_a_tracker_is_an_error_that_says_what_to_do(scratch_checkout):
    from zenml.client import Client
    from zenml.enums import StackComponentType

    from pipelines.preflight import PreflightError, require_experiment_tracker

    client = Client()
    default = client.get_stack("default")
    if not client.list_stacks(name="no-tracker").items:
        client.create_stack(name="no-tracker", components={
            kind: str(default.components[kind][0].id)
            for kind in (StackComponentType.ORCHESTRATOR, StackComponentType.ARTIFACT_STORE)
        })
    client.activate_stack("no-tracker")
    with pytest.raises(PreflightError, match=r"timewarp_explicit logs to MLflow, but the active stack 'no-tracker' "
                                              r"has no experiment tracker: run `make stack`"):
        require_experiment_tracker("timewarp_explicit")
    assert client.active_stack_model.name == "no-tracker"  # a stack the user chose is not replaced

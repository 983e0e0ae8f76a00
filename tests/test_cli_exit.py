"""The end of ``zenml pipeline run``: a run that failed in a step exits non-zero with a
message naming the step, its error and its logs (a real CLI run on the isolated local
stack); a returned failed run fails; a run whose steps ran elsewhere ends with the closing
lines read back from the stored logs of the step that printed them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from zenml import pipeline, step

pytestmark = pytest.mark.pipeline

# Not imported from conftest: the closing_run child imports this module, and conftest would
# point it at a fresh ZenML store.
REPO_ROOT = Path(__file__).resolve().parent.parent
ZENML = str(Path(sys.executable).parent / "zenml")
CLOSING = ["ACC: tiny 0.62 [0.55, 0.69]", "Registered timewarp-test version 3 as champion: first model", "ZenML run x"]


@step(enable_cache=False)
def closing_step() -> int:
    print("some progress")
    print("\n".join(CLOSING))
    return 1


@pipeline(enable_cache=False)
def closing_pipeline():
    closing_step()


def _cli_env() -> dict:
    """The isolated store's local stack (inherited ZENML_CONFIG_PATH), ZenML's default log
    level (the step logs keep INFO records, prints included)."""
    from zenml.client import Client

    from infra.local_stack import STACK

    client = Client()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ZENML_ACTIVE_STACK_ID": str(client.get_stack(STACK).id),
           "ZENML_ACTIVE_PROJECT_ID": str(client.get_project("default").id)}
    env.pop("ZENML_LOGGING_VERBOSITY", None)
    return env


def _latest_run(pipeline_name: str):
    from zenml.client import Client

    return Client().list_pipeline_runs(pipeline=pipeline_name, sort_by="desc:created", size=1).items[0]


@pytest.fixture(scope="module")
def failed_cli_run(local_stack, tmp_path_factory):
    """``zenml pipeline run timewarp_data`` with a data folder that does not exist: the
    pipeline compiles, then locate_shards fails inside its step."""
    config = tmp_path_factory.mktemp("cli") / "run.yaml"
    config.write_text(yaml.safe_dump({"parameters": {"finevideo_root": str(config.parent / "missing")}}))
    result = subprocess.run([ZENML, "pipeline", "run", "timewarp_data", "-c", str(config)],
                            cwd=REPO_ROOT, env=_cli_env(), capture_output=True, text=True, timeout=300)
    return result, _latest_run("timewarp_data")


@pytest.fixture(scope="module")
def closing_run(local_stack):
    """closing_pipeline run in its own process (pytest's output capture would keep the
    step's prints from ZenML's log capture)."""
    command = [sys.executable, "-c", "from tests.test_cli_exit import closing_pipeline; closing_pipeline()"]
    result = subprocess.run(command, cwd=REPO_ROOT, env=_cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return _latest_run("closing_pipeline")


def test_a_step_failure_exits_non_zero_naming_the_step_its_error_and_logs(failed_cli_run):
    result, run = failed_cli_run
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    ending = result.stderr[result.stderr.index(f"Run {run.name}"):]
    assert f"Run {run.name} ({run.id}) of timewarp_data FAILED in step(s) locate_shards" in ending
    assert "locate_shards: no parquet shards match" in ending
    assert "locate_shards logs (step): " in ending
    assert f"zenml pipeline runs get {run.id}" in ending
    assert "Traceback" not in ending


def test_a_returned_failed_run_raises(failed_cli_run):
    from zenml.enums import ExecutionStatus

    from pipelines.reporting import PipelineRunFailed, finish

    _, run = failed_cli_run
    assert run.status == ExecutionStatus.FAILED
    # What a remote orchestrator does: return the failed run instead of raising.
    with pytest.raises(PipelineRunFailed, match="FAILED in step\\(s\\) locate_shards"):
        finish(run, steps_ran_elsewhere=True)


def test_closing_lines_come_from_the_stored_step_logs(closing_run, capsys):
    from pipelines.reporting import closing_lines, finish

    assert closing_lines(closing_run, steps=("closing_step",)) == CLOSING
    assert closing_lines(closing_run) == []  # no register_model step in this run
    finish(closing_run, steps_ran_elsewhere=False)
    assert capsys.readouterr().out == ""  # a local run printed them already


def test_both_cli_forms_load_the_reporting_pipeline():
    from zenml.utils import source_utils

    from pipelines.reporting import ReportingPipeline

    for source in ("timewarp_explicit", "pipelines.timewarp_explicit.timewarp_explicit",
                   "timewarp_data", "pipelines.timewarp_data.timewarp_data"):
        assert isinstance(source_utils.load(source), ReportingPipeline), source

"""A run's outcome at the end of ``zenml pipeline run``: ZenML 0.98's CLI exits 0 when a
step failed in a pod (the Kubernetes orchestrator returns the failed run instead of
raising), and a run whose steps ran in pods prints their output nowhere on the caller's
terminal. ``reported`` makes a pipeline fail loudly, naming the failed steps and where their
logs are, and, when the steps ran elsewhere, end with the run's closing lines from the
stored logs of the step that printed them; every run then ends saying where to look (the
MLflow run, the registered version, the ZenML dashboard)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import click
from zenml.client import Client
from zenml.enums import ExecutionStatus
from zenml.pipelines.compilation_context import PipelineCompilationContext
from zenml.pipelines.pipeline_definition import Pipeline

from infra.local_stack import LOCAL_TRACKING_URI
from pipelines.preflight import PreflightError

#: The steps that end a run with its closing lines (a pipeline has one of them), and how
#: their closing print starts a line.
CLOSING_STEPS = ("register_model", "log_variants", "log_public_benchmarks")
CLOSING_MARKERS = ("Registered ", "Variants table of ", "Benchmarks of ")
#: Where `mlflow ui` (`make mlflow-ui`) and ZenML's local dashboard (`zenml login --local`)
#: serve by default.
MLFLOW_UI_URL = "http://127.0.0.1:5000"
LOCAL_DASHBOARD_URL = "http://127.0.0.1:8237"


class PipelineRunFailed(RuntimeError):
    """The run ended in a failed state (raised when not under the zenml CLI)."""


class ReportingPipeline(Pipeline):
    """A pipeline whose top-level call fails when its run failed and, for runs on another
    machine, prints the run's closing lines. Nested calls, preparation and compilation are
    ZenML's own."""

    def __call__(self, *args, **kwargs):
        if PipelineCompilationContext.is_active():
            return super().__call__(*args, **kwargs)
        client = Client()
        before = _latest_run_id(client, self.name)
        schedule_before = _latest_schedule(client, self.name)
        try:
            run = super().__call__(*args, **kwargs)
        except PreflightError as error:
            if _under_cli():  # the list of problems and their fixes, not a traceback
                raise SystemExit(str(error)) from error
            raise
        except Exception as error:
            # The local orchestrator raises a step's error; under the CLI, say which run and
            # step failed instead of ZenML's traceback. Errors before any run propagate.
            failed = _newer_run(client, self.name, before)
            if failed is None or failed.status != ExecutionStatus.FAILED or not _under_cli():
                raise
            raise SystemExit(failure_message(failed, f"{type(error).__name__}: {error}")) from error
        if run is None:  # a schedule, no run
            schedule = _latest_schedule(client, self.name)
            if schedule is not None and (schedule_before is None or schedule.id != schedule_before.id):
                print("\n".join(schedule_lines(schedule, self.name)))
            return None
        run = client.get_pipeline_run(run.id)
        finish(run, steps_ran_elsewhere=client.active_stack.orchestrator.flavor != "local")
        print("\n".join(run_pointers(run)))
        return run


def finish(run, steps_ran_elsewhere: bool) -> None:
    """End a returned run: fail if it failed; print its closing lines if its steps ran
    elsewhere (a local run printed them already); say how to follow a run still going."""
    if run.status == ExecutionStatus.FAILED:
        message = failure_message(run)
        raise SystemExit(message) if _under_cli() else PipelineRunFailed(message)
    if steps_ran_elsewhere:
        for line in closing_lines(run):
            print(line)
    if run.status != ExecutionStatus.COMPLETED:
        print(f"Run {run.name} is {run.status.value}: follow it with `zenml pipeline runs get {run.id}`")


def reported(pipeline: Pipeline) -> ReportingPipeline:
    """Make a ``@pipeline`` object a ReportingPipeline (same object, same configuration)."""
    pipeline.__class__ = ReportingPipeline
    return pipeline


def failure_message(run, error: str | None = None) -> str:
    """Which steps failed, with their error and log locations; ``error`` (what the caller
    caught) only when no step recorded its own."""
    failed = {name: step for name, step in run.steps.items() if step.status == ExecutionStatus.FAILED}
    lines = [f"Run {run.name} ({run.id}) of {run.pipeline.name} FAILED"
             + (f" in step(s) {', '.join(failed)}" if failed else "")]
    if error and not any(step.exception_info for step in failed.values()):
        lines.append(f"  error: {error}")
    for name, step in failed.items():
        info = step.exception_info
        if info:
            lines.append(f"  {name}: {info.message or info.traceback.strip().splitlines()[-1]}")
        for logs in step.log_collection or ():
            lines.append(f"  {name} logs ({logs.source}): {logs.uri}")
    lines.append(f"  details: `zenml pipeline runs get {run.id}` or the ZenML dashboard")
    return "\n".join(lines)


def schedule_lines(schedule, pipeline_name: str) -> list[str]:
    """What a scheduled submission created and how to run, list, pause, resume and delete
    it (on the Kubernetes orchestrator: a CronJob, which pause suspends)."""
    from zenml.integrations.kubernetes.constants import KUBERNETES_CRON_JOB_METADATA_KEY

    cron_job = schedule.run_metadata.get(KUBERNETES_CRON_JOB_METADATA_KEY)
    name = schedule.name
    lines = [f"Scheduled {pipeline_name}: schedule {name}, "
             f"cron {schedule.cron_expression!r}" + (f", Kubernetes CronJob {cron_job}" if cron_job else "")
             + "; no run was started now"]
    if cron_job:
        lines.append(f"  run now: python -m infra.trigger --schedule {name}  (local cluster: make cluster-trigger SCHEDULE={name})")
    lines += [
        "  list:    zenml pipeline schedule list",
        f"  pause:   zenml pipeline schedule deactivate {name}" + ("  (suspends the CronJob)" if cron_job else ""),
        f"  resume:  zenml pipeline schedule activate {name}",
        f"  delete:  zenml pipeline schedule delete {name} -y" + ("  (deletes the CronJob)" if cron_job else ""),
    ]
    return lines


def closing_lines(run, steps: tuple[str, ...] = CLOSING_STEPS) -> list[str]:
    """The last message the first of ``steps`` the run has printed that holds a line
    starting with one of CLOSING_MARKERS, read from its stored logs (in the artifact store
    the run wrote them to)."""
    from zenml.artifacts.utils import instantiate_artifact_store
    from zenml.log_stores.artifact.artifact_log_store import fetch_log_records

    step_run = next((run.steps[step] for step in steps if step in run.steps), None)
    if step_run is None:
        return []
    client = Client()
    closing: list[str] = []
    for logs in step_run.log_collection or ():
        if logs.artifact_store_id is None:
            continue
        store = instantiate_artifact_store(client.zen_store.get_stack_component(logs.artifact_store_id))
        for entry in fetch_log_records(store, logs.uri, limit=100_000):
            lines = entry.message.splitlines()
            if any(line.startswith(CLOSING_MARKERS) for line in lines):
                closing = lines
    return closing


def run_pointers(run) -> list[str]:
    """The run's last lines: where to look at it (:func:`where_to_look`), from the output
    of its closing step (the MLflow run, the registered version), the active stack's
    experiment tracker and the ZenML server the client is connected to, if any."""
    from zenml.utils.dashboard_utils import get_run_url

    closing, problem = None, None
    step_run = next((run.steps[step] for step in CLOSING_STEPS if step in run.steps), None)
    if step_run is not None and step_run.outputs:
        try:  # the step's summary dict (model_registration, variants_run, benchmark_run)
            closing = next(iter(step_run.outputs.values()))[0].load()
        except Exception as error:  # the run succeeded: say what is missing, do not fail it
            problem = f"{step_run.name}'s output could not be read ({type(error).__name__}: {error})"
    tracker = Client().active_stack.experiment_tracker
    lines = where_to_look(run.id, run.project.name, closing, tracker.get_tracking_uri() if tracker else None,
                          get_run_url(run))
    return lines + ([f"  (MLflow run unknown: {problem})"] if problem else [])


def where_to_look(run_id, project: str, closing: dict | None, tracking_uri: str | None,
                  dashboard_run_url: str | None) -> list[str]:
    """Where a run's results are: the MLflow run and the registered model version (from the
    closing step's summary ``closing``: ``mlflow_run_id``, ``mlflow_experiment_id``, and
    ``registered_model``, ``version``, ``alias`` when it registered one) in the MLflow UI,
    and the run in the ZenML dashboard (``dashboard_run_url`` when the client is connected
    to a server, else how to start the local one)."""
    lines = ["Where to look:"]
    if closing and closing.get("mlflow_run_id"):
        if tracking_uri and tracking_uri.startswith(("http://", "https://")):  # a tracking server serves its UI
            parts = urlsplit(tracking_uri)
            host = parts.hostname + (f":{parts.port}" if parts.port else "")  # without credentials
            ui, start = urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", "")), ""
        else:
            command = ("make mlflow-ui" if tracking_uri in (None, LOCAL_TRACKING_URI)
                       else f"mlflow ui --backend-store-uri {tracking_uri}")
            ui, start = MLFLOW_UI_URL, f"`{command}`, then "
        experiment, mlflow_run = closing.get("mlflow_experiment_id"), closing["mlflow_run_id"]
        lines.append(f"  MLflow run {mlflow_run}: {start}{ui}/#/experiments/{experiment}/runs/{mlflow_run}")
        if closing.get("registered_model"):
            name, version = closing["registered_model"], closing["version"]
            lines.append(f"  registered model {name} version {version} ({closing.get('alias')}): "
                         f"models:/{name}/{version}, {ui}/#/models/{name}/versions/{version}")
    if dashboard_run_url:
        lines.append(f"  ZenML dashboard: {dashboard_run_url}")
    else:
        lines.append(f"  ZenML dashboard: `source .venv/bin/activate && zenml login --local`, then "
                     f"{LOCAL_DASHBOARD_URL}/projects/{project}/runs/{run_id}")
    return lines


def _under_cli() -> bool:
    """Called from a click command (``zenml pipeline run``): end with a message and exit 1,
    not a traceback."""
    return click.get_current_context(silent=True) is not None


def _latest_run_id(client: Client, pipeline_name: str):
    runs = client.list_pipeline_runs(pipeline=pipeline_name, sort_by="desc:created", size=1).items
    return runs[0].id if runs else None


def _latest_schedule(client: Client, pipeline_name: str):
    try:
        pipeline_id = client.get_pipeline(pipeline_name, hydrate=False).id
    except KeyError:  # never run or scheduled
        return None
    schedules = client.list_schedules(pipeline_id=pipeline_id, sort_by="desc:created", size=1).items
    return schedules[0] if schedules else None


def _newer_run(client: Client, pipeline_name: str, before):
    runs = client.list_pipeline_runs(pipeline=pipeline_name, sort_by="desc:created", size=1).items
    return runs[0] if runs and runs[0].id != before else None

"""One run now from a schedule's Kubernetes CronJob, on any Kubernetes stack (``make
cluster-trigger`` on the local cluster):

    python -m infra.trigger [--schedule NAME] [--timeout SECONDS]

It creates the Job ``kubectl create job --from=cronjob/NAME`` would (the CronJob's
``jobTemplate``, annotated as a manual instantiation and owned by the CronJob) through the
Kubernetes API of the orchestrator that made the schedule (its service connector or
kubeconfig context: the emulator for the local cluster), waits for the ZenML run that Job's
orchestrator pod starts, printing each step's status as it changes, and ends the way
``zenml pipeline run`` does (:mod:`pipelines.reporting`): the run's closing lines, or the
failure message and exit status 1. The CronJob's schedule is not changed (a suspended one
can be triggered too).
"""

from __future__ import annotations

import argparse
import copy
import secrets
import time
from dataclasses import dataclass
from typing import Any

#: The pipeline whose newest schedule is triggered when no ``--schedule`` is given.
PIPELINE = "timewarp_explicit"
#: What ``kubectl create job --from=cronjob/...`` marks its Job with.
MANUAL_ANNOTATION = "cronjob.kubernetes.io/instantiate"
POLL_SECONDS = 3.0
POD_LOG_LINES = 20


class TriggerFailed(RuntimeError):
    """The run could not be started, failed or did not end in time (the message says which)."""


@dataclass
class KubernetesAPI:
    """The clients and namespace of the orchestrator that owns the CronJob."""

    batch: Any  # kubernetes.client.BatchV1Api
    core: Any  # kubernetes.client.CoreV1Api
    namespace: str

    @classmethod
    def connect(cls, api_client, namespace: str) -> KubernetesAPI:
        from kubernetes import client as k8s

        return cls(k8s.BatchV1Api(api_client), k8s.CoreV1Api(api_client), namespace)


def manual_job_name(cron_job: str) -> str:
    """``<cronjob>-manual-<5 hex>``, within the 63 characters a Job name may have (it is
    also a pod label)."""
    return f"{cron_job[:50].rstrip('-')}-manual-{secrets.token_hex(3)[:5]}"


def job_from_cron_job(cron_job: dict[str, Any], name: str) -> dict[str, Any]:
    """The Job ``kubectl create job NAME --from=cronjob/...`` makes from ``cron_job`` (as the
    API returns it): the template's spec, labels and annotations (over the manual
    annotation), and the CronJob as its controller."""
    template = cron_job["spec"]["jobTemplate"]
    template_meta = template.get("metadata") or {}
    metadata: dict[str, Any] = {
        "name": name,
        "annotations": {MANUAL_ANNOTATION: "manual", **(template_meta.get("annotations") or {})},
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": cron_job["metadata"]["name"],
                             "uid": cron_job["metadata"]["uid"], "controller": True}],
    }
    if template_meta.get("labels"):
        metadata["labels"] = dict(template_meta["labels"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": copy.deepcopy(template["spec"])}


def start_job(api: KubernetesAPI, cron_job: str) -> str:
    """Create a Job from the CronJob ``cron_job``; its name."""
    from kubernetes.client.rest import ApiException

    try:
        found = api.batch.read_namespaced_cron_job(cron_job, api.namespace)
    except ApiException as error:
        if error.status == 404:
            raise TriggerFailed(
                f"there is no CronJob {cron_job} in namespace {api.namespace} (deleted outside ZenML?): "
                "delete the schedule with `zenml pipeline schedule delete <name> -y` and create it again"
            ) from error
        raise
    job = job_from_cron_job(api.batch.api_client.sanitize_for_serialization(found), manual_job_name(cron_job))
    return api.batch.create_namespaced_job(api.namespace, job).metadata.name


def _job_ended(job) -> str | None:
    """``Complete``/``Failed`` with the reason, once the Job has ended."""
    for condition in (job.status and job.status.conditions) or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return f"{condition.type} ({condition.reason or 'no reason given'})"
    return None


def _pod_log_tail(api: KubernetesAPI, job_name: str) -> str:
    pods = api.core.list_namespaced_pod(api.namespace, label_selector=f"job-name={job_name}").items
    tails = []
    for pod in pods:
        log = api.core.read_namespaced_pod_log(pod.metadata.name, api.namespace)
        tails.append(f"--- pod {pod.metadata.name}:\n" + "\n".join(log.splitlines()[-POD_LOG_LINES:]))
    return "\n".join(tails) or "(no pod)"


def wait_for_run_id(api: KubernetesAPI, job_name: str, deadline: float) -> str:
    """The ZenML run the Job's orchestrator pod started (it writes the run's id into the
    Job's annotations)."""
    from zenml.integrations.kubernetes.constants import RUN_ID_ANNOTATION_KEY

    while True:
        job = api.batch.read_namespaced_job(job_name, api.namespace)
        run_id = (job.metadata.annotations or {}).get(RUN_ID_ANNOTATION_KEY)
        if run_id:
            return run_id
        if ended := _job_ended(job):
            raise TriggerFailed(f"Job {job_name} ended {ended} before it started a run; its pods' logs end:\n"
                                + _pod_log_tail(api, job_name))
        if time.monotonic() > deadline:
            raise TriggerFailed(f"Job {job_name} started no run in time; see `kubectl -n {api.namespace} "
                                f"describe job {job_name}` and its pods' logs")
        time.sleep(POLL_SECONDS)


def follow_run(api: KubernetesAPI, job_name: str, run_id: str, deadline: float):
    """Print each step's status as it changes until the run ends; the ended run."""
    from zenml.client import Client

    from pipelines.reporting import failure_message

    client = Client()
    seen: dict[str, str] = {}
    job_ended_at_last_poll = None
    while True:
        run = client.get_pipeline_run(run_id)
        for name, step in run.steps.items():
            if seen.get(name) != step.status.value:
                seen[name] = step.status.value
                print(f"{time.strftime('%H:%M:%S')} {name}: {step.status.value}", flush=True)
        if run.status.is_finished:
            return run
        if job_ended_at_last_poll:  # the orchestrator pod ends the run before it exits
            raise TriggerFailed(failure_message(run, f"its orchestrator Job {job_name} ended {job_ended_at_last_poll} "
                                                     f"with the run still {run.status.value}"))
        if time.monotonic() > deadline:
            raise TriggerFailed(f"Run {run.name} ({run.id}) is still {run.status.value} at the timeout; it goes on: "
                                f"follow it with `zenml pipeline runs get {run.id}`")
        job_ended_at_last_poll = _job_ended(api.batch.read_namespaced_job(job_name, api.namespace))
        time.sleep(POLL_SECONDS)


def trigger(api: KubernetesAPI, cron_job: str, timeout: float | None = None):
    """Start one run from ``cron_job``, follow it and end it as ``zenml pipeline run`` does:
    print its closing lines; raise TriggerFailed with the failure message if it did not
    complete. The run."""
    from zenml.enums import ExecutionStatus

    from pipelines.reporting import PipelineRunFailed, finish

    deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
    job_name = start_job(api, cron_job)
    print(f"Job {job_name} from CronJob {cron_job} (namespace {api.namespace}): waiting for its run", flush=True)
    run_id = wait_for_run_id(api, job_name, deadline)
    print(f"Run {run_id} started; `zenml pipeline runs get {run_id}` shows it", flush=True)
    run = follow_run(api, job_name, run_id, deadline)
    try:
        finish(run, steps_ran_elsewhere=True)
    except PipelineRunFailed as error:
        raise TriggerFailed(str(error)) from error
    if run.status != ExecutionStatus.COMPLETED:
        raise TriggerFailed(f"Run {run.name} ({run.id}) ended {run.status.value}, not completed")
    return run


def find_schedule(schedule_name: str | None):
    """The named schedule, or the newest one of PIPELINE that has a Kubernetes CronJob."""
    from zenml.client import Client
    from zenml.integrations.kubernetes.constants import KUBERNETES_CRON_JOB_METADATA_KEY

    client = Client()
    if schedule_name:
        try:
            return client.get_schedule(schedule_name, allow_name_prefix_match=False)
        except KeyError as error:
            raise TriggerFailed(f"no schedule {schedule_name!r}: `zenml pipeline schedule list` shows them") from error
    create = (f"create one with `zenml pipeline run {PIPELINE} -c configs/retrain_k8s.yaml` "
              "(local cluster: configs/retrain_k8s_local.yaml)")
    try:
        pipeline_id = client.get_pipeline(PIPELINE, hydrate=False).id
    except KeyError as error:
        raise TriggerFailed(f"{PIPELINE} has no schedule: {create}") from error
    schedules = [s for s in client.list_schedules(pipeline_id=pipeline_id, sort_by="desc:created", hydrate=True).items
                 if s.run_metadata.get(KUBERNETES_CRON_JOB_METADATA_KEY)]
    if not schedules:
        raise TriggerFailed(f"{PIPELINE} has no schedule with a Kubernetes CronJob: {create}")
    if len(schedules) > 1:
        print(f"{len(schedules)} schedules of {PIPELINE}; the newest, {schedules[0].name}, runs "
              "(SCHEDULE=<name> / --schedule picks another)", flush=True)
    return schedules[0]


def schedule_api(schedule) -> tuple[KubernetesAPI, str]:
    """The Kubernetes API of the schedule's orchestrator and the schedule's CronJob name."""
    from zenml.client import Client
    from zenml.enums import StackComponentType
    from zenml.integrations.kubernetes.constants import KUBERNETES_CRON_JOB_METADATA_KEY
    from zenml.stack import StackComponent

    cron_job = schedule.run_metadata.get(KUBERNETES_CRON_JOB_METADATA_KEY)
    if not cron_job or schedule.orchestrator_id is None:
        raise TriggerFailed(f"schedule {schedule.name} has no Kubernetes CronJob (it was not made by a "
                            "Kubernetes orchestrator)")
    model = Client().get_stack_component(StackComponentType.ORCHESTRATOR, schedule.orchestrator_id)
    orchestrator = StackComponent.from_model(model)
    return KubernetesAPI.connect(orchestrator.get_kube_client(), orchestrator.config.kubernetes_namespace), cron_job


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.trigger", description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedule", help=f"the ZenML schedule (default: the newest of {PIPELINE} with a CronJob)")
    parser.add_argument("--timeout", type=float, help="seconds to wait for the run (default: until it ends)")
    args = parser.parse_args(argv)
    try:
        schedule = find_schedule(args.schedule)
        api, cron_job = schedule_api(schedule)
        print(f"Schedule {schedule.name} (cron {schedule.cron_expression!r}): one run now", flush=True)
        trigger(api, cron_job, args.timeout)
    except TriggerFailed as error:
        raise SystemExit(str(error)) from error


if __name__ == "__main__":
    main()

"""Scheduled retraining without the whole cluster (seconds): the retrain configs are the run
configs they mirror plus a schedule; ``infra.trigger`` against the local cluster's
Kubernetes API emulator and pod runner alone: the Job it makes from a CronJob (what
``kubectl create job --from=cronjob/...`` makes), and a trigger whose Job starts no run or
whose run failed ends with the reason. The whole path (a schedule made by ZenML, two
triggered runs registering models) runs in tests/test_cluster.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from emulated_cluster import emulator_and_pod_runner
from zenml import pipeline, step

from infra.cluster import NAMESPACE
from infra.cluster.lifecycle import write_kubeconfig
from infra.cluster.sandbox import missing_privileges
from infra.trigger import MANUAL_ANNOTATION, KubernetesAPI, TriggerFailed, start_job, trigger

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS = REPO_ROOT / "configs"
#: Each retrain config and the run config it mirrors.
MIRRORS = {"retrain_k8s.yaml": "explicit_k8s.yaml", "retrain_k8s_local.yaml": "explicit_k8s_local.yaml"}
#: Orchestrator settings that only act on a CronJob.
CRON_JOB_SETTINGS = ("concurrency_policy", "successful_jobs_history_limit", "failed_jobs_history_limit",
                     "starting_deadline_seconds")

needs_pods = pytest.mark.skipif(bool(missing_privileges()) or not shutil.which("unshare"),
                                reason=f"the pod runner cannot run here: {missing_privileges() or 'needs unshare'}")


def test_retrain_configs_are_the_run_configs_plus_a_schedule():
    from zenml.config.schedule import Schedule

    for retrain, mirrored in MIRRORS.items():
        config, base = (yaml.safe_load((CONFIGS / name).read_text()) for name in (retrain, mirrored))
        schedule = Schedule(**config.pop("schedule"))
        assert schedule.name and len(schedule.cron_expression.split()) == 5, retrain
        for key in CRON_JOB_SETTINGS:
            config["settings"]["orchestrator"].pop(key, None)
        # A retrain reads the whole source: a cap keeps the first rows, never later shards.
        assert "max_videos" not in config["parameters"], retrain
        base["parameters"].pop("max_videos", None)
        assert config == base, f"configs/{retrain} drifted from configs/{mirrored}"


# -- against the emulator and the pod runner ------------------------------------------------

@pytest.fixture(scope="module")
def kubernetes_api():
    """The emulator and the pod runner of a cluster of their own; the kubernetes client on
    the cluster's kubeconfig (as ZenML's orchestrator connects)."""
    from kubernetes import config

    with emulator_and_pod_runner("timewarp-test-trigger-") as (url, root):
        client = config.new_client_from_config(str(write_kubeconfig(root, url)))
        yield KubernetesAPI.connect(client, NAMESPACE), url


def _create_cron_job(url: str, name: str, script: str, env: dict[str, str] | None = None) -> dict:
    """A CronJob shaped like the ZenML orchestrator's (labels and annotations on the Job
    template, a pod failure policy, no retry) whose pod runs ``script`` with Python."""
    meta = {"name": name, "labels": {"pipeline": "timewarp_explicit"}, "annotations": {"zenml.io/orchestrator": "test"}}
    container = {"name": "main", "image": "zenmldocker/zenml:0.98.0-py3.11", "command": [sys.executable, "-c", script]}
    if env:
        container["env"] = [{"name": key, "value": value} for key, value in env.items()]
    cron_job = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta, "spec": {
        "schedule": "0 2 * * 1", "concurrencyPolicy": "Forbid", "jobTemplate": {"metadata": meta, "spec": {
            "backoffLimit": 0,
            "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
            "template": {"metadata": {"labels": {"pipeline": "timewarp_explicit"}},
                         "spec": {"restartPolicy": "Never", "containers": [container]}}}}}}
    response = requests.post(f"{url}/apis/batch/v1/namespaces/{NAMESPACE}/cronjobs", json=cron_job, timeout=10)
    assert response.ok, response.text
    return response.json()


def _job(url: str, name: str) -> dict:
    return requests.get(f"{url}/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{name}", timeout=10).json()


def _wait_ended(url: str, name: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = _job(url, name)
        if any(c["status"] == "True" for c in job["status"].get("conditions", [])):
            return job
        assert time.monotonic() < deadline, f"job {name} did not end: {job}"
        time.sleep(0.2)


@needs_pods
def test_a_triggered_job_is_the_cron_jobs_template_owned_by_it(kubernetes_api):
    api, url = kubernetes_api
    cron_job = _create_cron_job(url, "retrain-weekly", "print('retraining')")
    name = start_job(api, "retrain-weekly")

    job = _job(url, name)
    template = cron_job["spec"]["jobTemplate"]
    assert name.startswith("retrain-weekly-manual-")
    assert job["metadata"]["annotations"] == {MANUAL_ANNOTATION: "manual", **template["metadata"]["annotations"]}
    assert job["metadata"]["labels"] == template["metadata"]["labels"]
    assert job["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "retrain-weekly",
                                                   "uid": cron_job["metadata"]["uid"], "controller": True}]
    assert {key: job["spec"][key] for key in template["spec"]} == template["spec"]
    # The pod runner ran it like any Job; the CronJob itself is unchanged.
    assert [c["type"] for c in _wait_ended(url, name)["status"]["conditions"]] == ["Complete"]
    cron_now = requests.get(f"{url}/apis/batch/v1/namespaces/{NAMESPACE}/cronjobs/retrain-weekly", timeout=10).json()
    assert cron_now["spec"] == cron_job["spec"]


def _without_empty(value):
    """An object without the null and empty fields Go's encoder writes (kubectl's output)."""
    if isinstance(value, dict):
        kept = {key: _without_empty(item) for key, item in value.items()}
        return {key: item for key, item in kept.items() if item not in (None, {}, [])}
    if isinstance(value, list):
        return [_without_empty(item) for item in value]
    return value


@needs_pods
@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed")
def test_the_job_is_the_one_kubectl_create_job_from_cronjob_makes(kubernetes_api, tmp_path):
    from infra.trigger import job_from_cron_job

    api, url = kubernetes_api
    cron_job = _create_cron_job(url, "retrain-nightly", "print('retraining')")
    kubeconfig = write_kubeconfig(tmp_path, url)
    made = subprocess.run(["kubectl", "create", "job", "retrain-by-hand", "--from=cronjob/retrain-nightly",
                           "--dry-run=client", "-o", "json"], env={**os.environ, "KUBECONFIG": str(kubeconfig)},
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert _without_empty(json.loads(made.stdout)) == _without_empty(job_from_cron_job(cron_job, "retrain-by-hand"))


@pytest.fixture
def fast_polls(monkeypatch):
    monkeypatch.setattr("infra.trigger.POLL_SECONDS", 0.2)


@needs_pods
def test_a_job_that_starts_no_run_fails_the_trigger_with_its_pod_log(kubernetes_api, fast_polls):
    api, url = kubernetes_api
    _create_cron_job(url, "cannot-start", "print('cannot reach the ZenML server'); raise SystemExit(1)")
    with pytest.raises(TriggerFailed) as failed:
        trigger(api, "cannot-start", timeout=60)
    message = str(failed.value)
    assert "ended Failed (BackoffLimitExceeded) before it started a run" in message
    assert "cannot reach the ZenML server" in message


@step(enable_cache=False)
def read_source() -> int:
    raise ValueError("the data source is empty")


@pipeline(enable_cache=False)
def failing_retrain():
    read_source()


#: What the orchestrator pod does once it has created its run: write the run's id into its
#: Job's annotations (found through its own pod's owner, the pod being named by hostname).
ANNOTATE_RUN = """
import json, os, socket, urllib.request
api, namespace = os.environ["API"], os.environ["NAMESPACE"]
pod = json.load(urllib.request.urlopen(f"{api}/api/v1/namespaces/{namespace}/pods/{socket.gethostname()}"))
job = pod["metadata"]["ownerReferences"][0]["name"]
patch = {"metadata": {"annotations": {"zenml.io/run-id": os.environ["RUN_ID"]}}}
urllib.request.urlopen(urllib.request.Request(f"{api}/apis/batch/v1/namespaces/{namespace}/jobs/{job}", method="PATCH",
    data=json.dumps(patch).encode(), headers={"Content-Type": "application/merge-patch+json"}))
"""


@needs_pods
@pytest.mark.pipeline
def test_a_failed_run_fails_the_trigger_with_the_runs_failure(kubernetes_api, fast_polls):
    from zenml.client import Client
    from zenml.enums import ExecutionStatus

    from infra.local_stack import other_store_in_this_checkout
    from pipelines.reporting import failure_message

    api, url = kubernetes_api
    with other_store_in_this_checkout(), pytest.raises(Exception):  # the local orchestrator raises the step's error
        failing_retrain()
    run = Client().list_pipeline_runs(pipeline="failing_retrain", sort_by="desc:created", size=1).items[0]
    assert run.status == ExecutionStatus.FAILED
    _create_cron_job(url, "fails-in-a-step", ANNOTATE_RUN, {"API": url, "NAMESPACE": NAMESPACE, "RUN_ID": str(run.id)})
    with pytest.raises(TriggerFailed) as failed:
        trigger(api, "fails-in-a-step", timeout=60)
    assert str(failed.value) == failure_message(Client().get_pipeline_run(run.id))
    assert "FAILED in step(s) read_source" in str(failed.value)


def test_without_a_schedule_the_trigger_exits_non_zero_saying_how_to_make_one():
    from infra.local_stack import other_store_in_this_checkout

    with other_store_in_this_checkout():  # the test store's, not the user's
        result = subprocess.run([sys.executable, "-m", "infra.trigger"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "timewarp_explicit has no schedule" in result.stderr
    assert "configs/retrain_k8s.yaml" in result.stderr


# -- refused before anything is registered (pipelines/preflight.py) -------------------------

def test_a_kubernetes_schedule_needs_a_cron_expression():
    from datetime import datetime, timedelta, timezone

    from zenml.config.schedule import Schedule

    from pipelines.preflight import schedule_problems

    weekly = Schedule(start_time=datetime(2030, 1, 7, 2, tzinfo=timezone.utc), interval_second=timedelta(days=7))
    (problem,) = schedule_problems(weekly, "kubernetes")
    assert problem.startswith("the schedule has no cron_expression: the Kubernetes orchestrator schedules runs as a CronJob")
    assert schedule_problems(weekly, "airflow") == []
    assert schedule_problems(Schedule(cron_expression="0 2 * * 1"), "kubernetes") == []


@pytest.mark.pipeline
def test_a_taken_schedule_name_is_refused_before_anything_is_registered(local_stack, tmp_path):
    from zenml.client import Client
    from zenml.enums import StackComponentType
    from zenml.models import ScheduleRequest

    from pipelines.preflight import PreflightError
    from pipelines.timewarp_data import timewarp_data

    client = Client()
    taken = client.zen_store.create_schedule(ScheduleRequest(
        project=client.active_project.id, pipeline_id=timewarp_data.register().id, name="retrain-taken", active=True,
        orchestrator_id=client.active_stack_model.components[StackComponentType.ORCHESTRATOR][0].id,
        cron_expression="0 2 * * 1"))
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"parameters": {"sample_videos": 4},
                                      "schedule": {"name": "retrain-taken", "cron_expression": "0 2 * * 1"}}))
    with pytest.raises(PreflightError, match="a schedule named 'retrain-taken' exists already: delete it with "
                                             "`zenml pipeline schedule delete retrain-taken -y`"):
        timewarp_data.with_options(config_path=str(config))()
    assert [s.id for s in client.list_schedules(name="retrain-taken").items] == [taken.id]

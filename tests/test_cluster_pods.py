"""The local cluster's Kubernetes side alone (emulator + pod runner, no ZenML; seconds):
Jobs become pods that run as sandboxed local processes, with Kubernetes' retry, status,
volume, log and deletion semantics."""

from __future__ import annotations

import shutil
import time

import pytest
import requests
from emulated_cluster import emulator_and_pod_runner

from infra.cluster.sandbox import missing_privileges

if (problem := missing_privileges()) or not shutil.which("unshare"):
    pytest.skip(f"the local cluster cannot run here: {problem or 'needs unshare'}", allow_module_level=True)

NS = "timewarp"


@pytest.fixture(scope="module")
def api():
    with emulator_and_pod_runner("timewarp-test-pods-") as (url, root):
        yield url, root


def _job(name: str, script: str, backoff_limit: int = 0, **pod_spec) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": {"step_name": name}},
            "spec": {"backoffLimit": backoff_limit, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "any", "command": ["/bin/sh", "-c", script],
                                "env": [{"name": "GREETING", "value": "hello"}], **pod_spec.pop("container", {})}],
                **pod_spec}}}}


def _wait_job(url: str, name: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = requests.get(f"{url}/apis/batch/v1/namespaces/{NS}/jobs/{name}", timeout=5).json()
        if any(c["status"] == "True" for c in job["status"].get("conditions", [])):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {name} did not finish: {job}")


def _pods(url: str, job: str) -> list[dict]:
    return requests.get(f"{url}/api/v1/namespaces/{NS}/pods", params={"labelSelector": f"job-name={job}"},
                        timeout=5).json()["items"]


def test_a_job_runs_its_pod_with_env_hostname_app_and_volumes(api):
    url, root = api
    script = ('echo "$GREETING from $(hostname) in $(pwd)"; echo kept > /mnt/ckpt/file; '
              'mount | grep -q " /dev/shm type tmpfs"')
    job = _job("ok", script, volumes=[
        {"name": "ckpt", "persistentVolumeClaim": {"claimName": "claim"}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    ], container={"volumeMounts": [{"name": "ckpt", "mountPath": "/mnt/ckpt"},
                                   {"name": "dshm", "mountPath": "/dev/shm"}]})
    assert requests.post(f"{url}/apis/batch/v1/namespaces/{NS}/jobs", json=job, timeout=5).ok
    done = _wait_job(url, "ok")
    assert [c["type"] for c in done["status"]["conditions"]] == ["Complete"]
    (pod,) = _pods(url, "ok")
    name = pod["metadata"]["name"]
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["metadata"]["ownerReferences"][0]["uid"] == done["metadata"]["uid"]
    log = requests.get(f"{url}/api/v1/namespaces/{NS}/pods/{name}/log", timeout=5).text
    assert log == f"hello from {name} in /app\n"
    assert (root / "volumes" / "claim" / "file").read_text() == "kept\n"  # the claim outlives the pod
    assert (root / "manifests" / "Job-ok.yaml").exists() and (root / "manifests" / f"Pod-{name}.yaml").exists()


def test_failed_pods_are_replaced_until_the_backoff_limit(api):
    url, _ = api
    requests.post(f"{url}/apis/batch/v1/namespaces/{NS}/jobs", json=_job("flaky", "exit 3", backoff_limit=1), timeout=5)
    done = _wait_job(url, "flaky")
    (condition,) = done["status"]["conditions"]
    assert (condition["type"], condition["reason"]) == ("Failed", "BackoffLimitExceeded")
    pods = _pods(url, "flaky")
    assert len(pods) == 2
    assert {p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] for p in pods} == {3}


def test_deleting_a_job_kills_and_deletes_its_pods(api):
    url, _ = api
    requests.post(f"{url}/apis/batch/v1/namespaces/{NS}/jobs", json=_job("long", "sleep 600"), timeout=5)
    deadline = time.monotonic() + 30
    while not [p for p in _pods(url, "long") if p["status"].get("phase") == "Running"]:
        assert time.monotonic() < deadline, "the pod never ran"
        time.sleep(0.2)
    requests.delete(f"{url}/apis/batch/v1/namespaces/{NS}/jobs/long", timeout=5)
    deadline = time.monotonic() + 30
    while _pods(url, "long"):
        assert time.monotonic() < deadline, "the pod outlived its job"
        time.sleep(0.2)


def test_a_pod_the_runner_cannot_start_fails_with_the_reason_in_its_log(api):
    url, _ = api
    job = _job("configmap", "true", volumes=[{"name": "cfg", "configMap": {"name": "settings"}}],
               container={"volumeMounts": [{"name": "cfg", "mountPath": "/etc/settings"}]})
    requests.post(f"{url}/apis/batch/v1/namespaces/{NS}/jobs", json=job, timeout=5)
    assert _wait_job(url, "configmap")["status"]["conditions"][0]["type"] == "Failed"
    (pod,) = _pods(url, "configmap")
    log = requests.get(f"{url}/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}/log", timeout=5).text
    assert "volume 'cfg' of type ['configMap'] is not supported by the local pod runner" in log

"""The local cluster end to end (one cluster run for the whole suite): ``make cluster-up``,
the documented ``zenml pipeline run timewarp_explicit -c configs/explicit_k8s_local.yaml``
through the real ZenML Kubernetes orchestrator against the emulator, then scheduled
retraining on the same cluster (a CronJob, ``make cluster-trigger`` twice, pause, resume,
delete), ``make cluster-down``. The tests share the cluster and run in file order.

The pod runner's test hooks fail the first pod of ``prepare_videos_1`` (its Job must retry
it) and SIGKILL the first ``train_dpo`` pod once a complete checkpoint is on the
persistent volume (the retried pod must resume from it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests
import yaml

from infra.cluster import NAMESPACE, pod_log, read_state
from infra.cluster.sandbox import missing_privileges
from infra.cluster.services import is_running
from infra.cluster.stack import BUCKET, REGION, S3_KEYS, STACK

pytestmark = pytest.mark.pipeline

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
#: The Kubernetes version the recorded manifests are validated against (infra/README.md).
KUBERNETES_VERSION = "1.33.0"
FAILED_STEP, KILLED_STEP = "prepare_videos_1", "train_dpo"
CHECKPOINT_MARKER = "timewarp-checkpoints/dpo-*/checkpoint-*/timewarp_checkpoint.json"

if (problem := missing_privileges()) or not shutil.which("unshare") or not shutil.which("make"):
    pytest.skip(f"the local cluster cannot run here: {problem or 'needs unshare and make'}", allow_module_level=True)

#: The cluster's stack and project, named by environment variables for the run: ZenML reads
#: them before the checkout's ``.zen/config.yaml``, which other sessions may rewrite.
ACTIVE_IDS = """
import json
from zenml.client import Client
client = Client()
print(json.dumps({"ZENML_ACTIVE_STACK_ID": str(client.get_stack("%s").id),
                  "ZENML_ACTIVE_PROJECT_ID": str(client.get_project("default").id)}))
"""
RUN_COUNT = """
from zenml.client import Client
print(Client().list_pipeline_runs(pipeline_name="timewarp_explicit", size=1).total)
"""
RUN_SUMMARY = """
import json
from zenml.client import Client
run = Client().list_pipeline_runs(pipeline_name="timewarp_explicit", sort_by="desc:created", size=1).items[0]
print(json.dumps({
    "status": str(run.status.value), "stack": run.stack.name,
    "steps": {name: str(step.status.value) for name, step in run.steps.items()},
    "dpo_model_uri": run.steps["train_dpo"].outputs["dpo_model"][0].uri,
}))
"""


def _run(command: list[str], env: dict[str, str], timeout: float) -> str:
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{output[-5000:]}"
    return output


@pytest.fixture(scope="module")
def cluster():
    """A cluster of its own (state in a temporary folder, a client config of its own), with
    the test hooks on; stopped again whatever happens."""
    # Not under pytest's basetemp: other pytest sessions on this machine prune old ones.
    root = Path(tempfile.mkdtemp(prefix="timewarp-test-cluster-"))
    env = {**os.environ, "TIMEWARP_CLUSTER_DIR": str(root), "ZENML_CONFIG_PATH": str(root / "client"),
           "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", "ZENML_LOGGING_VERBOSITY": "INFO",
           "TIMEWARP_KUBELET_FAIL_ONCE": FAILED_STEP, "TIMEWARP_KUBELET_KILL_ONCE": f"{KILLED_STEP}:{CHECKPOINT_MARKER}"}
    repo_config = REPO_ROOT / ".zen" / "config.yaml"
    saved = repo_config.read_text() if repo_config.exists() else None
    # -o: never rebuild the environment from inside a test (only start the cluster).
    make = ["make", "-o", ".venv/.installed", "-o", ".zen/config.yaml"]
    try:
        _run([*make, "cluster-up"], env, timeout=400)
        yield root, env, make
    finally:
        subprocess.run([*make, "cluster-down"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)
        if saved is not None:  # the checkout's active stack, as another session may use it
            repo_config.write_text(saved)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def run_env(cluster) -> dict[str, str]:
    """The environment of ``zenml`` commands on the cluster: without the pod runner's test
    hooks, with the cluster's stack and project by id."""
    _, env, _ = cluster
    run_env = {key: value for key, value in env.items() if not key.startswith("TIMEWARP_KUBELET_")}
    ids = _run([sys.executable, "-c", ACTIVE_IDS % STACK], run_env, timeout=120).strip().splitlines()[-1]
    return {**run_env, **json.loads(ids)}


def _manifests(root: Path, kind: str) -> list[dict]:
    return [yaml.safe_load(p.read_text()) for p in sorted((root / "manifests").glob(f"{kind}-*.yaml"))]


def _pods_of(root: Path, step: str) -> list[dict]:
    pods = [p for p in _manifests(root, "Pod") if p["metadata"]["labels"].get("step_name") == step]
    return sorted(pods, key=lambda p: pod_log(root, p["metadata"]["name"]).stat().st_mtime)


# ~15 pods that each import ZenML and the project: minutes on two shared cores.
@pytest.mark.timeout(1500)
def test_explicit_pipeline_on_the_local_cluster(cluster, run_env):
    import boto3
    from mlflow.tracking import MlflowClient

    root, env, make = cluster
    urls = read_state(root)["urls"]
    output = _run([str(BIN / "zenml"), "pipeline", "run", "timewarp_explicit", "-c", "configs/explicit_k8s_local.yaml"],
                  run_env, timeout=900)

    # The run, as the cluster's ZenML server has it: completed, on the cluster's stack.
    summary = json.loads(_run([sys.executable, "-c", RUN_SUMMARY], run_env, timeout=120).strip().splitlines()[-1])
    assert summary["status"] == "completed", (summary, output[-3000:])
    assert summary["stack"] == STACK
    assert set(summary["steps"].values()) == {"completed"}, summary

    # One Job per step (plus the orchestrator's), each step's last pod succeeded.
    jobs = _manifests(root, "Job")
    step_jobs = [j["metadata"]["labels"]["step_name"] for j in jobs if "step_name" in j["metadata"]["labels"]]
    assert sorted(step_jobs) == sorted(summary["steps"]), step_jobs
    assert len(jobs) == len(step_jobs) + 1

    # Pod retries: the failed first pod was replaced and the step completed.
    first, *rest = _pods_of(root, FAILED_STEP)
    assert "the first attempt of prepare_videos_1 exits 1" in pod_log(root, first["metadata"]["name"]).read_text()
    assert len(rest) == 1

    # The killed training pod: the Job's next pod resumed from the checkpoint on the volume.
    killed, *retried = _pods_of(root, KILLED_STEP)
    assert "SIGKILL pod " + killed["metadata"]["name"] in (root / "logs" / "kubelet.log").read_text()
    assert len(retried) == 1, [p["metadata"]["name"] for p in retried]
    resumed = re.findall(r"resuming DPO from (\S+?)(?:\x1b|\s|$)", pod_log(root, retried[0]["metadata"]["name"]).read_text())
    assert resumed and resumed[0].startswith("/mnt/checkpoints/dpo-"), resumed
    max_steps = yaml.safe_load((REPO_ROOT / "configs" / "explicit_k8s_local.yaml").read_text())[
        "parameters"]["recipe_overrides"]["max_steps"]
    assert int(resumed[0].rsplit("-", 1)[1]) < max_steps, resumed  # killed mid-training
    run_folder = Path(resumed[0]).parent.relative_to("/mnt/checkpoints")  # (the trainer rotates checkpoints)
    assert (root / "volumes" / "timewarp-checkpoints" / run_folder / "model.safetensors").exists()

    # The model is registered in the MLflow server; the artifacts are in the S3 bucket.
    versions = MlflowClient(tracking_uri=urls["mlflow"]).search_model_versions("name='timewarp-explicit'")
    assert versions, "no version of timewarp-explicit in the MLflow server's registry"
    s3 = boto3.client("s3", endpoint_url=urls["s3"], region_name=REGION, **S3_KEYS)
    prefix = summary["dpo_model_uri"].removeprefix(f"s3://{BUCKET}/")
    assert summary["dpo_model_uri"].startswith(f"s3://{BUCKET}/")
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["KeyCount"] > 0

    # Every object the API received is valid for the Kubernetes version the README names.
    manifests = sorted(str(p) for p in (root / "manifests").glob("*.yaml"))
    assert {Path(p).name.split("-")[0] for p in manifests} >= {"Job", "Pod"}
    _run([str(BIN / "kubernetes-validate"), "--strict", "--quiet", "-k", KUBERNETES_VERSION, *manifests],
         env, timeout=300)


# After the run above, whose cached steps make each triggered run a few pods long.
@pytest.mark.timeout(2100)
def test_scheduled_retraining_on_the_local_cluster(cluster, run_env):
    from mlflow.tracking import MlflowClient

    root, env, make = cluster
    urls = read_state(root)["urls"]
    registry = MlflowClient(tracking_uri=urls["mlflow"])
    versions_before = {v.version for v in registry.search_model_versions("name='timewarp-explicit'")}
    runs_before = _run([sys.executable, "-c", RUN_COUNT], run_env, timeout=120).strip().splitlines()[-1]

    # Scheduling creates the CronJob and returns without a run, saying what it made.
    schedule = yaml.safe_load((REPO_ROOT / "configs" / "retrain_k8s_local.yaml").read_text())["schedule"]
    output = _run([str(BIN / "zenml"), "pipeline", "run", "timewarp_explicit", "-c", "configs/retrain_k8s_local.yaml"],
                  run_env, timeout=300)
    (cron_job,) = _manifests(root, "CronJob")
    name = cron_job["metadata"]["name"]
    assert cron_job["spec"]["schedule"] == schedule["cron_expression"]
    assert f"schedule {schedule['name']}, cron '{schedule['cron_expression']}', Kubernetes CronJob {name}" in output
    assert _run([sys.executable, "-c", RUN_COUNT], run_env, timeout=120).strip().splitlines()[-1] == runs_before

    # Two runs from it now, each ending with the closing lines of a run; each re-scored the
    # champion of the moment (the first cluster run's model, then whichever won) on its items.
    for _ in range(2):
        output = _run([*make, "cluster-trigger"], run_env, timeout=900)
        assert re.search(r"^Registered timewarp-explicit version \d+ as (champion|challenger): \S", output, re.M), \
            output[-3000:]
        assert re.search(r"^re-scored the champion models:/timewarp-explicit/\d+ on benchmark bench-", output, re.M), \
            output[-3000:]
    new = [v for v in registry.search_model_versions("name='timewarp-explicit'") if v.version not in versions_before]
    assert len(new) == 2 and all(v.tags.get("promotion") in ("champion", "challenger") for v in new), new
    # The registry says why: the reason, and the scores both models had on the same items.
    for version in new:
        assert version.tags["promotion_reason"] and version.tags["compared_with"].startswith("version "), version.tags
        assert {"candidate.accuracy_normal", "champion.accuracy_normal", "gate_scorer"} <= set(version.tags)
    manual = [job for job in _manifests(root, "Job") if job["metadata"].get("ownerReferences", [{}])[0].get("name") == name]
    assert len(manual) == 2
    assert all(job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual" for job in manual)
    created = [str(root / "manifests" / f"{kind}-{obj['metadata']['name']}.yaml") for kind, obj in
               [("CronJob", cron_job), *(("Job", job) for job in manual)]]
    _run([str(BIN / "kubernetes-validate"), "--strict", "--quiet", "-k", KUBERNETES_VERSION, *created], env, timeout=300)

    # Pause, resume and delete, as the Kubernetes API has the CronJob after each.
    cron_job_url = f"{urls['kubernetes']}/apis/batch/v1/namespaces/{NAMESPACE}/cronjobs/{name}"
    zenml_schedule = [str(BIN / "zenml"), "pipeline", "schedule"]
    _run([*zenml_schedule, "deactivate", schedule["name"]], run_env, timeout=120)
    assert requests.get(cron_job_url, timeout=10).json()["spec"]["suspend"] is True
    _run([*zenml_schedule, "activate", schedule["name"]], run_env, timeout=120)
    assert requests.get(cron_job_url, timeout=10).json()["spec"]["suspend"] is False
    _run([*zenml_schedule, "delete", schedule["name"], "-y"], run_env, timeout=120)
    assert requests.get(cron_job_url, timeout=10).status_code == 404


def test_cluster_down_stops_everything_and_switches_the_client_back(cluster):
    # cluster-down stops every recorded process and switches the client back; twice is fine.
    root, env, make = cluster
    pids = read_state(root)["pids"]
    _run([*make, "cluster-down"], env, timeout=120)
    assert not any(is_running(entry) for entry in pids.values())
    assert not (root / "client" / "config.yaml").exists()  # there was none before cluster-up
    assert "nothing was running" in _run([*make, "cluster-down"], env, timeout=120)

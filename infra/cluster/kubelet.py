"""The local cluster's pod runner (its kubelet and Job controller in one): every Job the
emulator holds gets a Pod (from its template, labelled and owned as Kubernetes does), whose
container runs as a local process (see :mod:`infra.cluster.sandbox`); Pod and Job status are
written back; a failed pod is replaced until the Job's ``backoffLimit`` (with its
``podFailurePolicy``) is spent; pods of a deleted Job are killed and deleted. Pods created
directly run once. GPU requests and limits are recorded but not enforced.

Test hooks (environment of this process, for tests only):
- ``TIMEWARP_KUBELET_FAIL_ONCE=<step>``: the first pod of that step's Job exits 1 at once.
- ``TIMEWARP_KUBELET_KILL_ONCE=<step>:<glob>``: the first pod of that step is SIGKILLed once
  a file matching ``<glob>`` exists in the persistent volumes folder.

    python -m infra.cluster.kubelet --api URL [--env KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from infra.cluster import cluster_dir, pod_log
from infra.cluster.sandbox import PodSpecError, decode_secret, resolve_env, start_container

POLL_SECONDS = 0.5
FINISHED = ("Succeeded", "Failed")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _name(obj: dict[str, Any]) -> str:
    return obj["metadata"]["name"]


def _phase(pod: dict[str, Any]) -> str | None:
    return (pod.get("status") or {}).get("phase")


def _exit_code(pod: dict[str, Any]) -> int | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if "terminated" in (status.get("state") or {}):
            return status["state"]["terminated"]["exitCode"]
    return None


def _job_finished(job: dict[str, Any]) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def failure_action(job: dict[str, Any], exit_code: int) -> str:
    """What the Job's ``podFailurePolicy`` does with a pod that exited with ``exit_code``
    (``Count`` when no rule matches, as Kubernetes does)."""
    for rule in (job["spec"].get("podFailurePolicy") or {}).get("rules") or []:
        codes = rule.get("onExitCodes")
        if codes and (exit_code in codes["values"]) == (codes["operator"] == "In"):
            return rule["action"]
    return "Count"


def pod_for_job(job: dict[str, Any]) -> dict[str, Any]:
    """A new Pod from the Job's template, with the labels and owner a Job controller sets."""
    template = job["spec"]["template"]
    meta = template.get("metadata") or {}
    job_name, uid = _name(job), job["metadata"]["uid"]
    labels = {**(meta.get("labels") or {}), "job-name": job_name, "batch.kubernetes.io/job-name": job_name,
              "controller-uid": uid, "batch.kubernetes.io/controller-uid": uid}
    metadata = {
        "name": f"{job_name[:57]}-{secrets.token_hex(3)[:5]}", "namespace": job["metadata"]["namespace"],
        "labels": labels,
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": uid,
                             "controller": True, "blockOwnerDeletion": True}],
    }
    if meta.get("annotations"):
        metadata["annotations"] = meta["annotations"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}


@dataclass
class TestHooks:
    fail_once: str | None = None
    kill_step: str | None = None
    kill_glob: str | None = None

    @classmethod
    def from_env(cls) -> TestHooks:
        kill = os.environ.get("TIMEWARP_KUBELET_KILL_ONCE") or ""
        step, _, pattern = kill.partition(":")
        return cls(os.environ.get("TIMEWARP_KUBELET_FAIL_ONCE") or None, step or None, pattern or None)


@dataclass
class Running:
    process: subprocess.Popen
    namespace: str
    step: str | None
    started: str


class PodRunner:
    def __init__(self, api: str, root: Path, node_env: dict[str, str], hooks: TestHooks) -> None:
        self.api, self.root, self.node_env, self.hooks = api.rstrip("/"), root, node_env, hooks
        self.http = requests.Session()
        self.running: dict[str, Running] = {}
        self.hooks_fired: set[str] = set()

    # -- API ---------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = self.http.request(method, self.api + path, json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def _patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        prefix = "/api/v1" if kind == "pods" else "/apis/batch/v1"
        self._call("PATCH", f"{prefix}/namespaces/{namespace}/{kind}/{name}/status", {"status": status})

    def _read_secret(self, namespace: str, name: str) -> dict[str, str]:
        return decode_secret(self._call("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}"))

    # -- pods --------------------------------------------------------------------------------

    def start(self, pod: dict[str, Any], step: str | None) -> None:
        namespace, name = pod["metadata"]["namespace"], _name(pod)
        override = None
        if step and step == self.hooks.fail_once and "fail" not in self.hooks_fired:
            self.hooks_fired.add("fail")
            override = ["/bin/sh", "-c", f"echo 'pod runner test hook: the first attempt of {step} exits 1'; exit 1"]
        try:
            env = {**self.node_env, **resolve_env(pod["spec"]["containers"][0], pod,
                                                  lambda secret: self._read_secret(namespace, secret))}
            process = start_container(pod, env, self.root / "pods" / name, self.root / "volumes",
                                      pod_log(self.root, name), override)
        except (PodSpecError, KeyError, OSError) as error:
            pod_log(self.root, name).parent.mkdir(parents=True, exist_ok=True)
            pod_log(self.root, name).write_text(f"pod runner: cannot start the pod: {error}\n")
            self._finish(namespace, pod, 128, "StartError", str(error), _now())
            return
        started = _now()
        self.running[name] = Running(process, namespace, step, started)
        container = pod["spec"]["containers"][0]
        self._patch_status("pods", namespace, name, {
            "phase": "Running", "startTime": started, "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
            "conditions": [{"type": t, "status": "True", "lastTransitionTime": started}
                           for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
            "containerStatuses": [{"name": container["name"], "image": container.get("image", ""), "imageID": "",
                                   "ready": True, "started": True, "restartCount": 0,
                                   "state": {"running": {"startedAt": started}}}],
        })

    def _finish(self, namespace: str, pod: dict[str, Any], code: int, reason: str, message: str, started: str) -> None:
        container = pod["spec"]["containers"][0]
        finished = _now()
        self._patch_status("pods", namespace, _name(pod), {
            "phase": "Succeeded" if code == 0 else "Failed", **({"message": message} if message else {}),
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": finished}],
            "containerStatuses": [{"name": container["name"], "image": container.get("image", ""), "imageID": "",
                                   "ready": False, "started": False, "restartCount": 0,
                                   "state": {"terminated": {"exitCode": code, "reason": reason,
                                                            "startedAt": started, "finishedAt": finished}}}],
        })

    def reap(self) -> None:
        """Write back the status of pods whose process ended."""
        for name, run in list(self.running.items()):
            code = run.process.poll()
            if code is None:
                continue
            del self.running[name]
            code = 128 - code if code < 0 else code  # killed by a signal: 128 + its number
            pod = self._call("GET", f"/api/v1/namespaces/{run.namespace}/pods/{name}")
            self._finish(run.namespace, pod, code, "Completed" if code == 0 else "Error", "", run.started)

    def watch_kill_hook(self) -> None:
        """Poll for the kill hook's file often (a thread: a sync round can take seconds on
        a busy machine, and the pod must die mid-training, not after it)."""
        hooks = self.hooks
        while "kill" not in self.hooks_fired:
            for name, run in list(self.running.items()):
                if run.step == hooks.kill_step and any((self.root / "volumes").glob(hooks.kill_glob or "*")):
                    self.hooks_fired.add("kill")
                    print(f"pod runner test hook: SIGKILL pod {name} ({run.step})", flush=True)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(run.process.pid, signal.SIGKILL)
            time.sleep(0.1)

    def remove(self, pod: dict[str, Any]) -> None:
        name = _name(pod)
        if (run := self.running.pop(name, None)) is not None:
            os.killpg(run.process.pid, signal.SIGKILL)
            run.process.wait()
        self._call("DELETE", f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/{name}")

    # -- jobs --------------------------------------------------------------------------------

    def sync_job(self, job: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        if _job_finished(job) or any(_name(p) in self.running for p in pods):
            return
        namespace, name = job["metadata"]["namespace"], _name(job)
        now = _now()
        if any(_phase(p) == "Succeeded" for p in pods):
            self._patch_status("jobs", namespace, name, {
                "active": 0, "succeeded": 1, "completionTime": now,
                "conditions": [{"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now}],
            })
            return
        actions = [failure_action(job, _exit_code(p) or 1) for p in pods if _phase(p) == "Failed"]
        counted = actions.count("Count")
        if "FailJob" in actions or counted > job["spec"].get("backoffLimit", 6):
            reason = "PodFailurePolicy" if "FailJob" in actions else "BackoffLimitExceeded"
            self._patch_status("jobs", namespace, name, {
                "active": 0, "failed": len(actions),
                "conditions": [{"type": "Failed", "status": "True", "reason": reason, "lastProbeTime": now,
                                "lastTransitionTime": now, "message": "Job has reached the specified backoff limit"
                                if reason == "BackoffLimitExceeded" else "a pod failure matched a FailJob rule"}],
            })
            return
        pod = self._call("POST", f"/api/v1/namespaces/{namespace}/pods", pod_for_job(job))
        self._patch_status("jobs", namespace, name, {"active": 1, "failed": len(actions),
                                                      "startTime": (job.get("status") or {}).get("startTime") or now})
        self.start(pod, (job["metadata"].get("labels") or {}).get("step_name"))

    def sync(self) -> None:
        self.reap()
        jobs = {job["metadata"]["uid"]: job for job in self._call("GET", "/apis/batch/v1/jobs")["items"]}
        owned: dict[str, list[dict[str, Any]]] = {uid: [] for uid in jobs}
        for pod in self._call("GET", "/api/v1/pods")["items"]:
            owners = [o["uid"] for o in pod["metadata"].get("ownerReferences") or [] if o.get("kind") == "Job"]
            if not owners:
                if _phase(pod) is None and _name(pod) not in self.running:
                    self.start(pod, None)
            elif owners[0] in jobs:
                owned[owners[0]].append(pod)
            else:
                self.remove(pod)  # its Job was deleted
        for uid, job in jobs.items():
            self.sync_job(job, owned[uid])

    def run_forever(self) -> None:
        while True:
            try:
                self.sync()
            except Exception:  # the API may be restarting: keep the pods, try again
                traceback.print_exc()
            time.sleep(POLL_SECONDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", required=True, help="the emulator's URL")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="the node's environment")
    args = parser.parse_args()
    node_env = dict(item.split("=", 1) for item in args.env)
    runner = PodRunner(args.api, cluster_dir(), node_env, TestHooks.from_env())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if runner.hooks.kill_step:
        threading.Thread(target=runner.watch_kill_hook, daemon=True).start()
    try:
        runner.run_forever()
    finally:
        for run in runner.running.values():  # a stopped node takes its pods with it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.process.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()

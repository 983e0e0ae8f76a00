"""``cluster-up`` and ``cluster-down``: start the local cluster's processes, wait until
each is healthy, register the stack; stop them again by their recorded pids."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import yaml

from infra.cluster import KUBE_CONTEXT, NAMESPACE, read_state, write_state
from infra.cluster.sandbox import missing_privileges
from infra.cluster.services import BIN, free_port, http_ok, is_running, start, stop_all, wait_until
from infra.cluster.stack import BUCKET, REGION, S3_KEYS, register_stack, switch_back, switch_to_server

SERVICES = ("kubernetes", "s3", "mlflow", "zenml", "kubelet")
#: Settings of the machine running the pods that pods inherit (a node's, not a pod spec's).
NODE_PASSTHROUGH = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TQDM_DISABLE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                    "ZENML_LOGGING_VERBOSITY")


def write_kubeconfig(root: Path, url: str) -> Path:
    path = root / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": KUBE_CONTEXT,
        "clusters": [{"name": KUBE_CONTEXT, "cluster": {"server": url}}],
        "users": [{"name": KUBE_CONTEXT, "user": {"token": "local-cluster"}}],
        "contexts": [{"name": KUBE_CONTEXT,
                      "context": {"cluster": KUBE_CONTEXT, "user": KUBE_CONTEXT, "namespace": NAMESPACE}}],
    }))
    return path


def _base_env() -> dict[str, str]:
    return {**os.environ, "ZENML_ANALYTICS_OPT_IN": "false", "PYTHONUNBUFFERED": "1"}


def _node_env(root: Path, urls: dict[str, str]) -> dict[str, str]:
    """The environment every pod starts with (the pod's own ``env`` comes on top): the image's
    Python first on PATH, the image's ZenML config folder, and the S3 credentials a node's
    cloud identity would give (the project opens ``s3://`` shards with plain fsspec)."""
    env = {
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/app",
        "PYTHONUNBUFFERED": "1", "ZENML_CONFIG_PATH": "/app/.zenconfig", "ZENML_ANALYTICS_OPT_IN": "false",
        "KUBECONFIG": str(root / "kubeconfig"), "MPLCONFIGDIR": str(root / "cache" / "matplotlib"),
        "AWS_ACCESS_KEY_ID": S3_KEYS["aws_access_key_id"], "AWS_SECRET_ACCESS_KEY": S3_KEYS["aws_secret_access_key"],
        "AWS_ENDPOINT_URL": urls["s3"], "AWS_DEFAULT_REGION": REGION,
    }
    env.update({key: os.environ[key] for key in NODE_PASSTHROUGH if key in os.environ})
    return env


def _create_bucket(url: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=url, region_name=REGION, **S3_KEYS)
    if BUCKET not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=BUCKET)


def running(root: Path) -> bool:
    pids = read_state(root).get("pids", {})
    return all(name in pids and is_running(pids[name]) for name in SERVICES)


def up(root: Path) -> dict[str, str]:
    """Start (or keep) the cluster and (re-)register its stack; the services' URLs."""
    if problem := missing_privileges():
        raise SystemExit(f"cannot start the local cluster: {problem}")
    root.mkdir(parents=True, exist_ok=True)
    if running(root):
        urls = read_state(root)["urls"]
    else:
        stop_all(root)  # whatever is left of an earlier, partial start
        urls = _start_services(root)
    switch_to_server(root, urls["zenml"])
    register_stack(urls)
    return urls


#: What a fresh start clears: moto keeps the bucket in memory, so the ZenML server's
#: artifacts and cache of an earlier cluster would point at objects that are gone.
RUN_STATE = ("zenml-server", "mlflow", "manifests", "logs", "pods", "volumes")


def _start_services(root: Path) -> dict[str, str]:
    for name in RUN_STATE:
        shutil.rmtree(root / name, ignore_errors=True)
    ports = {name: free_port() for name in ("kubernetes", "s3", "mlflow", "zenml")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = _base_env()
    logs = root / "logs"
    state = read_state(root)
    state["urls"] = urls
    write_state(root, state)

    started = time.monotonic()
    api = start(root, "kubernetes", [sys.executable, "-m", "infra.cluster.emulator", "--port", str(ports["kubernetes"])], env)
    s3 = start(root, "s3", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(ports["s3"])], env)
    mlflow_dir = root / "mlflow"
    mlflow_dir.mkdir(exist_ok=True)
    mlflow = start(root, "mlflow", [
        str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(ports["mlflow"]), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{mlflow_dir / 'mlflow.db'}",
        "--serve-artifacts", "--artifacts-destination", str(mlflow_dir / "artifacts"),
    ], env)
    zenml = start(root, "zenml", [
        str(BIN / "uvicorn"), "zenml.zen_server.zen_server_api:app", "--host", "127.0.0.1", "--port", str(ports["zenml"]),
    ], {**env, "ZENML_CONFIG_PATH": str(root / "zenml-server"), "ZENML_SERVER_AUTH_SCHEME": "NO_AUTH",
        "ZENML_SERVER_AUTO_ACTIVATE": "true"})

    wait_until(http_ok(urls["kubernetes"] + "/version"), api, "the Kubernetes API emulator", logs / "kubernetes.log", 60)
    write_kubeconfig(root, urls["kubernetes"])
    wait_until(http_ok(urls["s3"] + "/moto-api/"), s3, "the S3 server (moto)", logs / "s3.log", 60)
    _create_bucket(urls["s3"])
    node_env = [f"--env={key}={value}" for key, value in _node_env(root, urls).items()]
    kubelet = start(root, "kubelet", [sys.executable, "-m", "infra.cluster.kubelet", "--api", urls["kubernetes"],
                                      *node_env], env)
    wait_until(http_ok(urls["mlflow"] + "/health"), mlflow, "the MLflow server", logs / "mlflow.log", 120)
    wait_until(http_ok(urls["zenml"] + "/health"), zenml, "the ZenML server", logs / "zenml.log", 180)
    wait_until(lambda: True, kubelet, "the pod runner", logs / "kubelet.log", 1)
    print(f"local cluster started in {time.monotonic() - started:.0f} s", flush=True)
    return urls


def down(root: Path) -> tuple[list[str], Path | None]:
    """Stop every recorded process and switch the ZenML client back; what was stopped and
    the client config folder switched back (None if it was not switched)."""
    return stop_all(root), switch_back(root)

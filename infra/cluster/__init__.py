"""The local cluster for tests and CI (``make cluster-up`` / ``make cluster-down``): a
Kubernetes API emulator with a pod runner, a ZenML server, an S3 server and an MLflow
server, all on 127.0.0.1 and run as local processes. See infra/README.md.

Everything it writes lives in one folder, ``.timewarp/cluster`` in this checkout (or
``TIMEWARP_CLUSTER_DIR``): ``state.json`` (ports, pids), ``logs/``, ``manifests/``,
``pods/`` (one working folder per pod), ``volumes/`` (persistent volume claims).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "timewarp"
KUBE_CONTEXT = "timewarp-emulator"


def cluster_dir() -> Path:
    return Path(os.environ.get("TIMEWARP_CLUSTER_DIR") or REPO / ".timewarp" / "cluster").resolve()


def pod_log(root: Path, pod_name: str) -> Path:
    """Where the pod runner writes a pod's output and the emulator serves it from."""
    return root / "logs" / "pods" / f"{pod_name}.log"


def read_state(root: Path) -> dict:
    path = root / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_state(root: Path, state: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(root / "state.json")

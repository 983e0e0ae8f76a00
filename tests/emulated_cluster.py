"""The Kubernetes API emulator and the pod runner of a cluster of their own (no ZenML server,
S3 or MLflow), for tests of what talks to the Kubernetes API."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.cluster.services import free_port, http_ok, start, stop_all, wait_until


@contextmanager
def emulator_and_pod_runner(prefix: str) -> Iterator[tuple[str, Path]]:
    """(API URL, cluster folder); every process stopped and the folder removed after."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    env = {**os.environ, "TIMEWARP_CLUSTER_DIR": str(root)}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        emulator = start(root, "kubernetes", [sys.executable, "-m", "infra.cluster.emulator", "--port", str(port)], env)
        wait_until(http_ok(url + "/version"), emulator, "emulator", root / "logs" / "kubernetes.log", 60)
        start(root, "kubelet", [sys.executable, "-m", "infra.cluster.kubelet", "--api", url, "--env=PATH=/usr/bin:/bin"],
              env)
        yield url, root
    finally:
        stop_all(root)
        shutil.rmtree(root, ignore_errors=True)

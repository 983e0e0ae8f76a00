"""How the pod runner starts one pod's container as a local process, the way a container
runtime would: its own hostname (ZenML names the orchestrator's pod by ``gethostname()``),
its own ``/app`` (ZenML chdirs there and unpacks the code to ``/app/code``) and its volumes
mounted at their ``mountPath``, in private UTS and mount namespaces (``unshare``; needs
root), with only the pod's environment plus the node's."""

from __future__ import annotations

import base64
import os
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The image's working directory (ZenML's ``DOCKER_IMAGE_WORKDIR``).
APP_DIR = "/app"


class PodSpecError(ValueError):
    """A pod the runner cannot start as asked (the pod fails with this message)."""


def missing_privileges() -> str | None:
    """Why pods cannot be sandboxed here, or None."""
    if os.geteuid() != 0:
        return ("the local cluster's pod runner gives each pod its own /app, hostname and volume "
                "mounts with mount and UTS namespaces (unshare), which needs root: run "
                "`make cluster-up` as root (e.g. in the CI container)")
    return None


def resolve_env(
    container: dict[str, Any], pod: dict[str, Any], read_secret: Callable[[str], dict[str, str]]
) -> dict[str, str]:
    """The container's ``env`` / ``envFrom`` as plain values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "secretRef" in source:
            env.update(read_secret(source["secretRef"]["name"]))
        else:
            raise PodSpecError(f"envFrom {sorted(source)} is not supported by the local pod runner")
    for item in container.get("env") or []:
        if "value" in item or "valueFrom" not in item:
            env[item["name"]] = str(item.get("value", ""))
            continue
        ref = item["valueFrom"]
        if "secretKeyRef" in ref:
            env[item["name"]] = read_secret(ref["secretKeyRef"]["name"])[ref["secretKeyRef"]["key"]]
        elif "fieldRef" in ref:
            path = ref["fieldRef"]["fieldPath"]
            value: Any = pod
            for part in path.split("."):
                value = value.get(part, "") if isinstance(value, dict) else ""
            env[item["name"]] = str(value)
        else:
            raise PodSpecError(f"env {item['name']}: valueFrom {sorted(ref)} is not supported by the local pod runner")
    return env


def decode_secret(secret: dict[str, Any]) -> dict[str, str]:
    values = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    values.update(secret.get("stringData") or {})
    return values


def _mount_lines(pod: dict[str, Any], container: dict[str, Any], pod_dir: Path, volumes_dir: Path) -> list[str]:
    """Shell lines that mount the container's volumes (in the pod's mount namespace)."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    lines = []
    for mount in container.get("volumeMounts") or []:
        target = mount["mountPath"]
        volume = volumes.get(mount["name"])
        if volume is None:
            raise PodSpecError(f"volumeMount {mount['name']!r} names no volume of the pod")
        if "emptyDir" in volume and (volume["emptyDir"] or {}).get("medium") == "Memory":
            size = (volume["emptyDir"] or {}).get("sizeLimit")
            options = f"-o size={shlex.quote(_tmpfs_size(size))} " if size else ""
            lines.append(f"mount -t tmpfs {options}tmpfs {shlex.quote(target)}")
            continue
        if "emptyDir" in volume:
            source = pod_dir / "volumes" / mount["name"]
        elif "persistentVolumeClaim" in volume:
            source = volumes_dir / volume["persistentVolumeClaim"]["claimName"]
        elif "hostPath" in volume:
            source = Path(volume["hostPath"]["path"])
        else:
            kinds = sorted(set(volume) - {"name"})
            raise PodSpecError(f"volume {mount['name']!r} of type {kinds} is not supported by the local pod runner")
        source.mkdir(parents=True, exist_ok=True)
        Path(target).mkdir(parents=True, exist_ok=True)  # the mount point, on the node
        lines.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(target)}")
    return lines


def _tmpfs_size(quantity: str) -> str:
    """A Kubernetes quantity (``8Gi``) as a tmpfs size (``8g``)."""
    for suffix, unit in (("Ki", "k"), ("Mi", "m"), ("Gi", "g"), ("Ti", "t")):
        if quantity.endswith(suffix):
            return quantity[: -len(suffix)] + unit
    return quantity


def start_container(
    pod: dict[str, Any],
    env: dict[str, str],
    pod_dir: Path,
    volumes_dir: Path,
    log_path: Path,
    command_override: list[str] | None = None,
) -> subprocess.Popen:
    """Start the pod's first container; its output goes to ``log_path``."""
    container = pod["spec"]["containers"][0]
    command = command_override or [*(container.get("command") or []), *(container.get("args") or [])]
    if not command:
        raise PodSpecError("the container has no command: the local pod runner does not run image entrypoints")
    app = pod_dir / "app"
    app.mkdir(parents=True, exist_ok=True)
    Path(APP_DIR).mkdir(exist_ok=True)  # the mount point, on the node
    script = [
        "set -e",
        f"hostname {shlex.quote(pod['metadata']['name'])}",
        f"mount --bind {shlex.quote(str(app))} {APP_DIR}",
        *_mount_lines(pod, container, pod_dir, volumes_dir),
        f"cd {shlex.quote(container.get('workingDir') or APP_DIR)}",
        'exec "$@"',
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            ["unshare", "--uts", "--mount", "--propagation", "private", "--",
             "/bin/sh", "-c", "\n".join(script), "pod", *command],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )

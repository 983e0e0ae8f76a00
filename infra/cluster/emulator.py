"""The Kubernetes API of the local cluster: kmock's emulator plus what a real API server
does that the ZenML orchestrator and the kubernetes client rely on: server-side defaulting
on create, label and field selectors on lists, and ``pods/<name>/log`` (served from the
pod runner's log files). Every object it receives is written to
``<cluster>/manifests/<kind>-<name>.yaml`` for validation, as the API server reads it (kind
from the URL, spec defaults applied), before the server's own fields.

    python -m infra.cluster.emulator --port PORT
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import itertools
import uuid
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml

from infra.cluster import cluster_dir, pod_log

_versions = itertools.count(1)


def default_spec(obj: dict[str, Any]) -> None:
    """The spec defaults a real API server fills in: without ``onPodConditions[].status``
    (ZenML 0.98 leaves it out; the schema requires it) the kubernetes client (25.x) cannot
    read a Job back."""
    specs = [obj.get("spec", {})]
    if obj.get("kind") == "CronJob":
        specs.append(obj.get("spec", {}).get("jobTemplate", {}).get("spec", {}))
    for spec in specs:
        for rule in (spec.get("podFailurePolicy") or {}).get("rules", []):
            for condition in rule.get("onPodConditions") or []:
                condition.setdefault("status", "True")


def set_server_fields(obj: dict[str, Any], namespace: str | None) -> None:
    """What the API server adds on create; clients poll ``status`` before anyone wrote it."""
    meta = obj.setdefault("metadata", {})
    meta.setdefault("uid", str(uuid.uuid4()))
    meta.setdefault("creationTimestamp", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    meta["resourceVersion"] = str(next(_versions))
    if namespace:
        meta.setdefault("namespace", namespace)
    obj.setdefault("status", {})


def _redacted(obj: dict[str, Any]) -> dict[str, Any]:
    """A Secret as recorded on disk: keys kept, values replaced."""
    if obj.get("kind") != "Secret":
        return obj
    hidden = base64.b64encode(b"redacted").decode()
    return {**obj, "data": {key: hidden for key in obj.get("data") or {}},
            **({"stringData": {key: "redacted" for key in obj["stringData"]}} if obj.get("stringData") else {})}


def record(root: Path, obj: dict[str, Any]) -> None:
    kind = obj.get("kind", "Unknown")
    name = obj.get("metadata", {}).get("name", "unnamed")
    folder = root / "manifests"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{kind}-{name}.yaml").write_text(yaml.safe_dump(_redacted(obj), sort_keys=False))


def _label_matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _field_matches(obj: dict[str, Any], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        negate = "!=" in term
        path, value = term.replace("!=", "=").replace("==", "=").split("=", 1)
        found: Any = obj
        for part in path.split("."):
            found = found.get(part) if isinstance(found, dict) else None
        if (str(found) == value) == negate:
            return False
    return True


@attrs.define(kw_only=True)
class RecordingEmulator(kmock.KubernetesEmulator):
    root: Path

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            self._set_type(request)
            default_spec(request.data)
            record(self.root, request.data)
            set_server_fields(request.data, request.namespace)
        elif request.action == kmock.action.UPDATE and isinstance(request.data, dict):
            request.data.setdefault("metadata", {})["resourceVersion"] = str(next(_versions))
        if request.subresource == "log" and request.resource is not None and request.resource.plural == "pods":
            path = pod_log(self.root, request.name or "")
            return aiohttp.web.Response(text=path.read_text(errors="replace") if path.exists() else "")
        return await super()._handle(request)

    def _set_type(self, request: kmock.Request) -> None:
        """``kind`` and ``apiVersion`` from the URL, as the API server reads them (the
        kubernetes client may leave them out of the body)."""
        resource = request.resource
        assert resource is not None
        request.data.setdefault("apiVersion", f"{resource.group}/{resource.version}" if resource.group else resource.version)
        if "kind" not in request.data and resource in self.resources and self.resources[resource].kind:
            request.data["kind"] = self.resources[resource].kind

    async def _serve_list(self, request: kmock.Request) -> dict[str, Any]:
        listed = await super()._serve_list(request)
        labels, fields = request.params.get("labelSelector"), request.params.get("fieldSelector")
        listed["items"] = [
            item for item in listed["items"]
            if (not labels or _label_matches(item.get("metadata", {}).get("labels") or {}, labels))
            and (not fields or _field_matches(item, fields))
        ]
        return listed


async def serve(port: int, root: Path) -> None:
    emulator = RecordingEmulator(root=root)
    emulator.resources.load_bundled()
    async with emulator, kmock.Server(emulator, port=port):
        print(f"Kubernetes API emulator on http://127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, cluster_dir()))


if __name__ == "__main__":
    main()

"""The ZenML side of the local cluster: the client config that points this checkout's
ZenML at the cluster's server (and back), and the stack ``timewarp-k8s-local``.

``ZENML_CONFIG_PATH`` (``.timewarp/zenml`` under make) names the client config every plain
``zenml`` command in the checkout uses. ``cluster-up`` keeps a copy of it and of the
checkout's ``.zen/config.yaml`` (its active stack) under ``<cluster>/client-backup/`` and
points it at the cluster's server; ``cluster-down`` puts both copies back, so the embedded
store (``make demo``) is used again."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from infra.cluster import KUBE_CONTEXT, NAMESPACE, REPO

STACK = "timewarp-k8s-local"
BUCKET = "timewarp-artifacts"
S3_KEYS = {"aws_access_key_id": "timewarp-local", "aws_secret_access_key": "timewarp-local-secret"}
REGION = "us-east-1"
REPO_CONFIG = REPO / ".zen" / "config.yaml"


def client_config_dir() -> Path:
    if os.environ.get("ZENML_CONFIG_PATH"):
        return Path(os.environ["ZENML_CONFIG_PATH"]).resolve()
    from zenml.utils.io_utils import get_global_config_directory

    return Path(get_global_config_directory())


def switch_to_server(root: Path, url: str) -> Path:
    """Point the client config at ``url``, keeping what was there (once: a second
    cluster-up keeps the first copy). Returns the client config folder."""
    folder = client_config_dir()
    backup = root / "client-backup"
    if not (backup / "switched-from").exists():
        backup.mkdir(parents=True, exist_ok=True)
        for source, name in ((folder / "config.yaml", "config.yaml"), (REPO_CONFIG, "repo-config.yaml")):
            if source.exists():
                shutil.copy2(source, backup / name)
        (backup / "switched-from").write_text(str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    current = folder / "config.yaml"
    if current.exists() and (yaml.safe_load(current.read_text()) or {}).get("store", {}).get("url") == url:
        return folder  # already this server's (keeps the client's user and active stack)
    current.write_text(yaml.safe_dump(
        {"store": {"type": "rest", "url": url}, "analytics_opt_in": False}))
    return folder


def switch_back(root: Path) -> Path | None:
    """Put the client config and the checkout's active stack back as they were before
    cluster-up; the client config folder, or None if nothing was switched."""
    backup = root / "client-backup"
    marker = backup / "switched-from"
    if not marker.exists():
        return None
    folder = Path(marker.read_text())
    if (backup / "config.yaml").exists():
        shutil.copy2(backup / "config.yaml", folder / "config.yaml")
    else:
        (folder / "config.yaml").unlink(missing_ok=True)
    if (backup / "repo-config.yaml").exists():
        shutil.copy2(backup / "repo-config.yaml", REPO_CONFIG)
    shutil.rmtree(backup)
    return folder


def register_stack(urls: dict[str, str]) -> str:
    """Register (or update to the current ports) and activate ``timewarp-k8s-local``;
    ``urls``: the ``kubernetes``, ``s3`` and ``mlflow`` endpoints."""
    from zenml.client import Client
    from zenml.enums import StackComponentType as Kind

    client = Client()
    for name, values in (("timewarp-local-s3", S3_KEYS),
                         ("timewarp-local-mlflow", {"username": "timewarp", "password": "unused-locally"})):
        try:
            client.get_secret(name)
        except KeyError:
            client.create_secret(name, values)

    connector = "timewarp-emulator"
    connector_config = {"cluster_name": KUBE_CONTEXT, "server": urls["kubernetes"], "token": "local-cluster", "insecure": True}
    existing = client.list_service_connectors(name=connector).items
    if existing:
        connector_id = client.update_service_connector(
            connector, configuration=connector_config, verify=False, update=True).id
    else:
        connector_id = client.create_service_connector(
            name=connector, connector_type="kubernetes", resource_type="kubernetes-cluster", auth_method="token",
            configuration=connector_config, verify=False, list_resources=False)[0].id

    components = {
        Kind.ORCHESTRATOR: ("timewarp-local-k8s", "kubernetes", {
            "kubernetes_namespace": NAMESPACE, "skip_local_validations": True}),
        Kind.ARTIFACT_STORE: ("timewarp-local-s3", "s3", {
            "path": f"s3://{BUCKET}", "key": "{{timewarp-local-s3.aws_access_key_id}}",
            "secret": "{{timewarp-local-s3.aws_secret_access_key}}",
            "client_kwargs": {"endpoint_url": urls["s3"], "region_name": REGION}}),
        # Unused with `docker: {skip_build: true}`, but the Kubernetes orchestrator's stack
        # validator asks for both.
        Kind.CONTAINER_REGISTRY: ("timewarp-local-registry", "default", {"uri": "localhost:5000"}),
        Kind.IMAGE_BUILDER: ("timewarp-local-builder", "local", {}),
        Kind.EXPERIMENT_TRACKER: ("timewarp-local-mlflow", "mlflow", {
            "tracking_uri": urls["mlflow"], "tracking_username": "{{timewarp-local-mlflow.username}}",
            "tracking_password": "{{timewarp-local-mlflow.password}}"}),
        Kind.MODEL_REGISTRY: ("timewarp-local-mlflow-registry", "mlflow", {}),
    }
    for kind, (name, flavor, configuration) in components.items():
        if client.list_stack_components(name=name, type=kind).items:
            client.update_stack_component(name, kind, configuration=configuration)
        else:
            client.create_stack_component(name=name, flavor=flavor, component_type=kind, configuration=configuration)
    client.update_stack_component("timewarp-local-k8s", Kind.ORCHESTRATOR, connector_id=connector_id)
    if not client.list_stacks(name=STACK).items:
        client.create_stack(name=STACK, components={kind: name for kind, (name, _, _) in components.items()})
    client.activate_stack(STACK)
    return STACK

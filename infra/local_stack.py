"""Register the embedded local stack idempotently: ZenML's default orchestrator and
artifact store plus an MLflow experiment tracker and model registry whose tracking store
is SQLite under ``.timewarp/mlflow`` (git-ignored). Sets it active.

    python -m infra.local_stack [--tracking-uri URI]
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STACK = "timewarp-local"
TRACKER = "timewarp-mlflow"
REGISTRY = "timewarp-mlflow-registry"
REPO = Path(__file__).resolve().parent.parent


#: The local stack's MLflow tracking store (what `make mlflow-ui` serves).
LOCAL_TRACKING_URI = f"sqlite:///{REPO / '.timewarp' / 'mlflow' / 'mlflow.db'}"


def default_tracking_uri() -> str:
    (REPO / ".timewarp" / "mlflow").mkdir(parents=True, exist_ok=True)
    return LOCAL_TRACKING_URI


# Experiments are created up front so their artifacts land under .timewarp/mlflow, not ./mlruns.
EXPERIMENTS = ("timewarp_explicit",)


def ensure_experiments(tracking_uri: str, artifact_root: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    for name in EXPERIMENTS:
        if client.get_experiment_by_name(name) is None:
            client.create_experiment(name, artifact_location=(artifact_root / name).resolve().as_uri())


@contextmanager
def other_store_in_this_checkout() -> Iterator[None]:
    """For code that points ZenML at a store of its own (tests, benchmarks): the checkout's
    active stack (``.zen/config.yaml``) is shared by every store used from it, so the one
    the user's own store had is put back afterwards."""
    from zenml.client import Client

    repo_config = REPO / ".zen" / "config.yaml"
    saved = repo_config.read_text() if repo_config.exists() else None
    if saved is None:
        Client.initialize(root=REPO)
    try:
        yield
    finally:
        if saved is not None:
            repo_config.write_text(saved)


def ensure_local_stack(tracking_uri: str | None = None, artifact_root: Path | None = None) -> str:
    from zenml.client import Client
    from zenml.enums import StackComponentType

    client = Client()
    tracking_uri = tracking_uri or default_tracking_uri()
    ensure_experiments(tracking_uri, artifact_root or REPO / ".timewarp" / "mlflow" / "artifacts")

    def component(name: str, kind: StackComponentType, configuration: dict) -> None:
        existing = client.list_stack_components(name=name, type=kind).items
        if not existing:
            client.create_stack_component(name=name, flavor="mlflow", component_type=kind, configuration=configuration)
        elif existing[0].configuration.get("tracking_uri", tracking_uri) != tracking_uri:
            client.update_stack_component(name, kind, configuration={"tracking_uri": tracking_uri})

    component(TRACKER, StackComponentType.EXPERIMENT_TRACKER, {"tracking_uri": tracking_uri})
    component(REGISTRY, StackComponentType.MODEL_REGISTRY, {})
    if not client.list_stacks(name=STACK).items:
        default = client.get_stack("default")
        client.create_stack(
            name=STACK,
            components={
                StackComponentType.ORCHESTRATOR: str(default.components[StackComponentType.ORCHESTRATOR][0].id),
                StackComponentType.ARTIFACT_STORE: str(default.components[StackComponentType.ARTIFACT_STORE][0].id),
                StackComponentType.EXPERIMENT_TRACKER: TRACKER,
                StackComponentType.MODEL_REGISTRY: REGISTRY,
            },
        )
    client.activate_stack(STACK)
    return STACK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default=None, help="default: SQLite under .timewarp/mlflow")
    args = parser.parse_args()
    print(f"active stack: {ensure_local_stack(args.tracking_uri)}")


if __name__ == "__main__":
    main()

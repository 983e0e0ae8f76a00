"""Compile a pipeline for an orchestrator that cannot be reached from here (Kubernetes,
Kubeflow): ZenML's own compiler against an in-memory stack holding that orchestrator and
the active stack's other components; nothing is registered, built or submitted."""

from datetime import datetime, timezone
from pathlib import Path
from uuid import uuid4

import yaml


def orchestrator_component(orchestrator_class, config, flavor: str):
    from zenml.enums import StackComponentType

    now = datetime.now(timezone.utc)
    return orchestrator_class(name=f"timewarp-{flavor}", id=uuid4(), flavor=flavor, type=StackComponentType.ORCHESTRATOR,
                              user=None, created=now, updated=now, config=config)


def compile_offline(pipeline, config_path: Path, orchestrator):
    """The snapshot ZenML would submit for ``pipeline`` with this run config on a stack of
    ``orchestrator`` plus the active stack's artifact store, tracker and model registry."""
    from zenml.client import Client
    from zenml.config.compiler import Compiler
    from zenml.config.pipeline_run_configuration import PipelineRunConfiguration
    from zenml.stack import Stack

    active = Client().active_stack
    stack = Stack(id=uuid4(), name=orchestrator.name, orchestrator=orchestrator, artifact_store=active.artifact_store,
                  experiment_tracker=active.experiment_tracker, model_registry=active.model_registry)
    prepared = pipeline.with_options(config_path=str(config_path))
    prepared.prepare()
    run_config = PipelineRunConfiguration(**yaml.safe_load(Path(config_path).read_text()))
    return Compiler().compile(pipeline=prepared, stack=stack, run_configuration=run_config)

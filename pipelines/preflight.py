"""Checks a run's stack and Kubernetes settings while the pipeline function is being
composed, before ZenML builds an image or starts a pod. The checks themselves are pure
functions in ``pipelines.pod_checks``; this module gathers what they need from ZenML: the
active stack, and each step's settings as the run config resolves them (pipeline-level
settings under each step's own, merged the way ZenML's compiler merges them)."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from zenml.client import Client
from zenml.config.pipeline_run_configuration import PipelineRunConfiguration
from zenml.config.schedule import Schedule
from zenml.config.step_configurations import StepConfigurationUpdate
from zenml.enums import StackComponentType
from zenml.pipelines.compilation_context import PipelineCompilationContext
from zenml.utils.dict_utils import recursive_update

from infra.local_stack import STACK as LOCAL_STACK
from pipelines.pod_checks import (
    gpu_request_problems,
    kubeflow_gpu_problems,
    local_artifact_store_problem,
    pod_settings_problems,
)

#: Orchestrators that run each step in a pod and take pod settings.
KUBERNETES_FLAVORS = ("kubernetes", "kubeflow", "kubeflow_gpu")


class PreflightError(ValueError):
    """The run cannot work as configured; raised before anything runs."""


def require_experiment_tracker(pipeline_name: str) -> None:
    """Fail before any work when the active stack has no experiment tracker, unless the
    checkout's active stack was merely reset: ZenML keeps one active stack per checkout
    (``.zen/config.yaml``) for every store used from it, so a ``zenml`` call with another
    store (without ``source .venv/bin/activate``, or from another environment) points it at
    that store's stack, and this store then falls back to its ``default``. With this store's
    ``default`` active and the project's stack registered, the project's stack is activated
    again (saying so) instead of failing."""
    client = Client()
    stack = client.active_stack_model
    if stack.components.get(StackComponentType.EXPERIMENT_TRACKER):
        return
    if stack.name == "default" and client.list_stacks(name=LOCAL_STACK).items:
        client.activate_stack(LOCAL_STACK)
        print(f"{pipeline_name}: the checkout's active stack was 'default', which has no experiment tracker "
              f"(a zenml call with another store, e.g. without `source .venv/bin/activate`, resets it); "
              f"activated '{LOCAL_STACK}' again, the stack `make stack` registers")
        return
    raise PreflightError(
        f"{pipeline_name} logs to MLflow, but the active stack {stack.name!r} has no experiment tracker: "
        f"run `make stack` for the local one ('{LOCAL_STACK}'), or see infra/README.md"
    )


def check_run(gpu_steps: Iterable[str] = ()) -> None:
    """Raise PreflightError listing every problem of the active stack and the run config.
    ``gpu_steps``: the run's steps whose recipe trains on GPU; on a Kubernetes or Kubeflow
    orchestrator each must request GPUs in the form that orchestrator compiles."""
    stack = Client().active_stack
    orchestrator = stack.orchestrator
    pipeline = PipelineCompilationContext.get().pipeline
    problems = local_artifact_store_problem(
        orchestrator.flavor, orchestrator.config.is_remote, stack.artifact_store.config.is_local
    )
    problems += schedule_problems(_run_schedule(pipeline), orchestrator.flavor)
    pipeline_settings, step_settings = _run_settings(pipeline)
    selectors = {"orchestrator", f"orchestrator.{orchestrator.flavor}", f"orchestrator:{orchestrator.name}"}
    settings_class = orchestrator.settings_class if orchestrator.flavor in KUBERNETES_FLAVORS else None
    # Each level's own settings: a typo is reported once, where it was written.
    levels = {"the pipeline's settings": pipeline_settings, **{f"step {step}": own for step, own in step_settings.items()}}
    for where, settings in levels.items():
        values = _merged(selectors, settings)
        if settings_class is not None:
            problems += [
                f"{where}: orchestrator settings have the unknown key {key!r}: use one of "
                f"{sorted(settings_class.model_fields)}"
                for key in values if key not in settings_class.model_fields
            ]
        if values.get("pod_settings"):
            problems += kubernetes_pod_settings_problems(where, values["pod_settings"])
    # GPU requests: what each step gets, its settings over the pipeline's.
    for step in gpu_steps:
        own = step_settings.get(step, {})
        if orchestrator.flavor == "kubernetes":
            pod_settings = _merged(selectors, pipeline_settings, own).get("pod_settings") or {}
            problems += gpu_request_problems(step, pod_settings)
        elif orchestrator.flavor in ("kubeflow", "kubeflow_gpu"):
            gpu_count = _merged({"resources"}, pipeline_settings, own).get("gpu_count")
            component = orchestrator.config.pod_settings.model_dump() if orchestrator.config.pod_settings else {}
            pod_settings = recursive_update(component, _merged(selectors, pipeline_settings, own).get("pod_settings") or {})
            accelerator = (pod_settings.get("node_selectors") or {}).get("accelerator")
            problems += kubeflow_gpu_problems(step, orchestrator.flavor, gpu_count, accelerator)
    if problems:
        raise PreflightError(
            f"{pipeline.name} cannot run as configured (nothing was started):\n"
            + "\n".join(f"  - {problem}" for problem in problems)
        )


def _run_settings(pipeline) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The pipeline-level settings and each configured step's own, as plain dicts keyed like
    the YAML (``orchestrator``, ``resources``, ...). Pipeline-level settings are already on
    the pipeline (``with_options(config_path=...)`` applied them); step settings come from the
    run config file and ``with_options(steps=...)``, which ZenML applies only when compiling."""
    run_args = pipeline._run_args
    steps: dict[str, Any] = {}
    if run_args.get("config_path"):
        from_file = pipeline._parse_config_file(run_args["config_path"], matcher=list(PipelineRunConfiguration.model_fields))
        steps.update(PipelineRunConfiguration(**from_file).steps or {})
    steps.update(run_args.get("step_configurations") or {})
    return _dumped(pipeline.configuration.settings), {
        name: _dumped(StepConfigurationUpdate.model_validate(update).settings) for name, update in steps.items()
    }


def _run_schedule(pipeline) -> Schedule | None:
    """The run's schedule: ``with_options(schedule=...)`` over the run config file's."""
    run_args = pipeline._run_args
    if run_args.get("schedule"):
        return run_args["schedule"]
    if run_args.get("config_path"):
        return PipelineRunConfiguration(**pipeline._parse_config_file(run_args["config_path"], matcher=["schedule"])).schedule
    return None


def schedule_problems(schedule: Schedule | None, orchestrator_flavor: str) -> list[str]:
    """What ZenML 0.98 would fail on only after registering the schedule (with a traceback,
    or leaving the schedule behind without a CronJob)."""
    if schedule is None:
        return []
    problems = []
    if orchestrator_flavor == "kubernetes" and not schedule.cron_expression:
        problems.append("the schedule has no cron_expression: the Kubernetes orchestrator schedules runs as a "
                        "CronJob, which needs one (e.g. \"0 2 * * 1\")")
    if schedule.name and Client().list_schedules(name=schedule.name).items:
        problems.append(f"a schedule named {schedule.name!r} exists already: delete it with `zenml pipeline schedule "
                        f"delete {schedule.name} -y` (that deletes its CronJob) or give this one another name")
    return problems


def _dumped(settings: dict[str, Any] | None) -> dict[str, Any]:
    # A step configured without settings (only ``enable_cache``, say) has None here.
    return {key: value.model_dump(exclude_unset=True) for key, value in (settings or {}).items()}


def _merged(selectors: set[str], *levels: dict[str, Any]) -> dict[str, Any]:
    """The settings under any key in ``selectors``, later levels over earlier ones the way
    ZenML's compiler merges a step's settings over the pipeline's (recursively, lists
    replaced)."""
    merged: dict[str, Any] = {}
    for level in levels:
        for key, value in level.items():
            if key in selectors:
                merged = recursive_update(merged, copy.deepcopy(value))
    return merged


def kubernetes_pod_settings_problems(where: str, pod_settings: Any) -> list[str]:
    """pod_checks.pod_settings_problems against ZenML's KubernetesPodSettings fields, the
    Kubernetes client's object schemas (as ZenML deserializes them) and quantity parser."""
    from kubernetes.utils import parse_quantity
    from zenml.integrations.kubernetes.pod_settings import KubernetesPodSettings
    from zenml.integrations.kubernetes.serialization_utils import deserialize_kubernetes_model

    def check_object(data, class_name):
        try:
            deserialize_kubernetes_model(dict(data), class_name)
        except (KeyError, ValueError, TypeError) as error:
            return str(error).strip("\"'")
        return None

    def check_quantity(amount):
        try:
            parse_quantity(amount)
        except ValueError as error:
            return str(error)
        return None

    if not isinstance(pod_settings, dict):
        return [f"{where}: pod_settings must be a mapping, got {pod_settings!r}"]
    return pod_settings_problems(where, pod_settings, KubernetesPodSettings.model_fields, check_object, check_quantity)

"""Pure checks of a run's Kubernetes settings (no zenml): what ``pipelines.preflight``
refuses before any pod starts. Each function returns the problems it found, each a sentence
that names the step and the fix; an empty list means the input is fine."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"

#: Pod-settings fields that hold Kubernetes objects, with the object's API class name.
KUBERNETES_OBJECT_FIELDS = {
    "volumes": "V1Volume",
    "volume_mounts": "V1VolumeMount",
    "tolerations": "V1Toleration",
    "env": "V1EnvVar",
    "env_from": "V1EnvFromSource",
    "affinity": "V1Affinity",
    "container_security_context": "V1SecurityContext",
}
RESOURCE_KINDS = ("limits", "requests", "claims")

#: Returns why ``data`` is not a valid Kubernetes object of the named class, or None.
ObjectCheck = Callable[[Mapping[str, Any], str], "str | None"]
#: Returns why a string is not a Kubernetes quantity ("4", "500m", "16Gi"), or None.
QuantityCheck = Callable[[str], "str | None"]


def local_artifact_store_problem(orchestrator: str, orchestrator_is_remote: bool, artifact_store_is_local: bool) -> list[str]:
    if orchestrator_is_remote and artifact_store_is_local:
        return [
            f"the stack's orchestrator ({orchestrator}) runs steps in pods, but its artifact store is "
            "local, so no pod can read another step's outputs: register an S3/GCS artifact store "
            "and add it to the stack (infra/register_k8s_stack.sh does both)"
        ]
    return []


def pod_settings_problems(
    where: str,
    pod_settings: Mapping[str, Any],
    allowed_keys: Collection[str],
    check_object: ObjectCheck,
    check_quantity: QuantityCheck,
) -> list[str]:
    """Unknown pod-settings keys (ZenML keeps them silently and never applies them),
    Kubernetes objects with unknown or missing fields, resource kinds other than
    limits/requests and quantities Kubernetes cannot parse, and mounts of undeclared volumes.
    ``where``: whose settings these are ("step train_dpo", "the pipeline's settings")."""
    where = f"{where}: pod_settings"
    problems = [
        f"{where} has the unknown key {key!r}: use one of {sorted(allowed_keys)}"
        for key in pod_settings if key not in allowed_keys
    ]
    for key, class_name in KUBERNETES_OBJECT_FIELDS.items():
        value = pod_settings.get(key)
        items = value if isinstance(value, list) else [value] if value else []
        for index, item in enumerate(items):
            error = check_object(item, class_name) if isinstance(item, Mapping) else f"expected a mapping, got {item!r}"
            if error:
                suffix = f"[{index}]" if isinstance(value, list) else ""
                problems.append(f"{where}.{key}{suffix} is not a Kubernetes {class_name[2:]}: {error}")
    for kind, amounts in (pod_settings.get("resources") or {}).items():
        if kind not in RESOURCE_KINDS:
            problems.append(f"{where}.resources has the unknown key {kind!r}: use limits and requests")
            continue
        for resource, amount in (amounts or {}).items() if kind != "claims" else ():
            # ZenML's pod settings take strings only (YAML reads `8` as a number).
            error = check_quantity(amount) if isinstance(amount, str) else f'write it as a string: "{amount}"'
            if error:
                problems.append(f"{where}.resources.{kind}.{resource} = {amount!r} is not a Kubernetes quantity: {error}")
    declared = {volume.get("name") for volume in pod_settings.get("volumes") or () if isinstance(volume, Mapping)}
    for mount in pod_settings.get("volume_mounts") or ():
        if isinstance(mount, Mapping) and mount.get("name") not in declared:
            problems.append(
                f"{where}.volume_mounts mounts {mount.get('name')!r}, which is not in its volumes: "
                "declare the volume in the same step's pod_settings"
            )
    return problems


def gpu_request_problems(step: str, pod_settings: Mapping[str, Any]) -> list[str]:
    """A step whose recipe trains on GPU must ask the Kubernetes scheduler for GPUs, or its
    pod lands on a CPU node and training fails (or crawls) after the data stage ran."""
    limits = (pod_settings.get("resources") or {}).get("limits") or {}
    try:
        gpus = int(str(limits.get(GPU_RESOURCE, 0)))
    except ValueError:
        gpus = 0
    if gpus > 0:
        return []
    return [
        f"step {step} trains on GPU (its recipe has no use_cpu), but its pod requests no GPU: set "
        f"steps.{step}.settings.orchestrator.pod_settings.resources.limits.{GPU_RESOURCE} in the run "
        "config (as configs/explicit_k8s.yaml does), or use_cpu: true in the recipe"
    ]


def kubeflow_gpu_problems(step: str, flavor: str, gpu_count: int | None, accelerator: str | None) -> list[str]:
    """On Kubeflow a step's GPUs reach the KFP spec only as ``resources.gpu_count`` with an
    ``accelerator`` node selector in its pod settings, and only with the ``kubeflow_gpu``
    flavor (infra/kubeflow_gpu.py): ZenML 0.98's own ``kubeflow`` flavor drops the selector."""
    fix = f"set steps.{step}.settings.resources.gpu_count and .orchestrator.pod_settings.node_selectors.accelerator"
    if flavor == "kubeflow":
        return [
            f"step {step} trains on GPU (its recipe has no use_cpu), but ZenML 0.98's kubeflow flavor "
            "compiles no GPU request: register the kubeflow_gpu flavor (infra/kubeflow_gpu.py) and an "
            "orchestrator of it (README: Kubeflow), or use_cpu: true in the recipe"
        ]
    problems = []
    if not gpu_count:
        problems.append(f"step {step} trains on GPU (its recipe has no use_cpu), but requests no GPU: {fix} "
                        "(as configs/explicit_kubeflow.yaml does), or use_cpu: true in the recipe")
    if not accelerator:
        problems.append(f"step {step} needs GPUs, but has no accelerator type, so no GPU request is compiled: {fix} "
                        "(e.g. nvidia.com/gpu)")
    return problems

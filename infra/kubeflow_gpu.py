"""The orchestrator flavor ``kubeflow_gpu``: ZenML 0.98's Kubeflow orchestrator, unchanged,
with settings that keep a step's ``pod_settings``.

ZenML's own Kubeflow settings rebuild ``pod_settings`` from legacy top-level fields on every
validation (and refuse those fields at registration), so the ``accelerator`` node selector,
the one thing its KFP v2 compiler reads to turn a step's ``resources.gpu_count`` into a GPU
request, never reaches the spec: with the stock flavor no step gets a GPU.

    zenml orchestrator flavor register infra.kubeflow_gpu.KubeflowGPUOrchestratorFlavor
    zenml orchestrator register timewarp-kubeflow --flavor=kubeflow_gpu --kubeflow_hostname=<url>
"""

from typing import Any

from pydantic import model_validator
from zenml.integrations.kubeflow.flavors.kubeflow_orchestrator_flavor import (
    KubeflowOrchestratorConfig,
    KubeflowOrchestratorFlavor,
    KubeflowOrchestratorSettings,
)
from zenml.integrations.kubeflow.orchestrators.kubeflow_orchestrator import KubeflowOrchestrator

FLAVOR = "kubeflow_gpu"


class KubeflowGPUOrchestratorSettings(KubeflowOrchestratorSettings):
    @model_validator(mode="before")
    @classmethod
    def _validate_and_migrate_pod_settings(cls, data: Any) -> Any:
        """Replaces ZenML's validator of the same name: pod_settings stay as given; the
        client credentials still come in pairs."""
        if isinstance(data, dict) and (data.get("client_username") is None) != (data.get("client_password") is None):
            raise ValueError("`client_username` and `client_password` both need to be set together.")
        return data


class KubeflowGPUOrchestratorConfig(KubeflowOrchestratorConfig, KubeflowGPUOrchestratorSettings):
    """ZenML's Kubeflow orchestrator config with the pod-settings-keeping validator."""


class KubeflowGPUOrchestrator(KubeflowOrchestrator):
    @property
    def settings_class(self) -> type[KubeflowGPUOrchestratorSettings]:
        return KubeflowGPUOrchestratorSettings


class KubeflowGPUOrchestratorFlavor(KubeflowOrchestratorFlavor):
    @property
    def name(self) -> str:
        return FLAVOR

    @property
    def config_class(self) -> type[KubeflowGPUOrchestratorConfig]:
        return KubeflowGPUOrchestratorConfig

    @property
    def implementation_class(self) -> type[KubeflowGPUOrchestrator]:
        return KubeflowGPUOrchestrator

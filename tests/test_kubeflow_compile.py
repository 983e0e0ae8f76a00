"""``timewarp_explicit`` with configs/explicit_kubeflow.yaml through ZenML 0.98's real
Kubeflow orchestrator code (its ``submit_pipeline`` compiles a KFP v2 spec on the client;
only the upload to a KFP server is replaced), loaded back with kfp's own loader: one task
per step, GPU accelerator limits where the config asks for them (with the kubeflow_gpu
flavor, infra/kubeflow_gpu.py), none with ZenML's own flavor; the preflight on Kubeflow stacks."""

from types import SimpleNamespace
from uuid import uuid4

import pytest

from tests.conftest import REPO_ROOT
from tests.offline_compile import compile_offline, orchestrator_component

CONFIG = REPO_ROOT / "configs" / "explicit_kubeflow.yaml"
GPU_STEPS = {"train_dpo": 8, "evaluate_base": 1, "evaluate_trained": 1, "evaluate_champion": 1}


def _compile_to_kfp(orchestrator):
    """The KFP spec ZenML's Kubeflow orchestrator writes for the config (submit_pipeline,
    with only the upload to a KFP server replaced), loaded with kfp's own loader."""
    from kfp.components import load_component_from_file

    from pipelines.timewarp_explicit import timewarp_explicit

    snapshot = compile_offline(timewarp_explicit, CONFIG, orchestrator)
    uploaded = {}
    orchestrator.get_image = lambda snapshot, step_name: "123456789012.dkr.ecr.eu-west-1.amazonaws.com/timewarp:test"
    orchestrator._upload_and_run_pipeline = lambda snapshot, pipeline_file_path, run_name: uploaded.update(path=pipeline_file_path)
    orchestrator.submit_pipeline(
        snapshot=SimpleNamespace(id=uuid4(), pipeline_configuration=snapshot.pipeline_configuration,
                                 step_configurations=snapshot.step_configurations),
        stack=SimpleNamespace(container_registry=object()),
        base_environment={}, step_environments={name: {} for name in snapshot.step_configurations},
    )
    return snapshot, load_component_from_file(uploaded["path"]).pipeline_spec


@pytest.fixture(scope="module")
def compiled_spec(local_stack):
    from infra.kubeflow_gpu import FLAVOR, KubeflowGPUOrchestrator, KubeflowGPUOrchestratorConfig

    config = KubeflowGPUOrchestratorConfig(kubeflow_hostname="https://kfp.invalid")
    return _compile_to_kfp(orchestrator_component(KubeflowGPUOrchestrator, config, FLAVOR))


def test_one_task_per_step(compiled_spec):
    snapshot, spec = compiled_spec
    tasks = spec.root.dag.tasks
    assert len(tasks) == len(snapshot.step_configurations)
    names = {task.task_info.name for task in tasks.values()}
    assert names == set(snapshot.step_configurations)
    assert {f"prepare_videos_{g}" for g in range(8)} | {"train_dpo", "register_model"} <= names
    # Steps the run does not have (no SFT stage, no control) are ignored, not an error.
    assert not {"train_sft", "continue_sft", "evaluate_control"} & names


def _resources(spec, step: str) -> dict:
    from google.protobuf.json_format import MessageToDict

    task = next(task for task in spec.root.dag.tasks.values() if task.task_info.name == step)
    executor = spec.deployment_spec["executors"][spec.components[task.component_ref.name].executor_label]
    return MessageToDict(executor)["container"].get("resources", {})


def test_gpu_requests_are_in_the_spec_where_zenml_keeps_them(compiled_spec):
    _, spec = compiled_spec
    for step, gpus in GPU_STEPS.items():
        accelerator = _resources(spec, step)["accelerator"]
        assert accelerator.get("resourceType", accelerator.get("type")) == "nvidia.com/gpu"
        assert int(accelerator.get("resourceCount", accelerator.get("count"))) == gpus
    assert "accelerator" not in _resources(spec, "prepare_videos_0")
    assert "accelerator" not in _resources(spec, "merge_corpus")


def test_cpu_limits_from_resource_settings(compiled_spec):
    _, spec = compiled_spec
    assert float(_resources(spec, "train_dpo")["cpuLimit"]) == 90
    assert float(_resources(spec, "prepare_videos_3")["cpuLimit"]) == 4




def test_zenmls_own_kubeflow_flavor_compiles_no_gpu_request(local_stack):
    from zenml.integrations.kubeflow.flavors.kubeflow_orchestrator_flavor import KubeflowOrchestratorConfig
    from zenml.integrations.kubeflow.orchestrators.kubeflow_orchestrator import KubeflowOrchestrator

    config = KubeflowOrchestratorConfig(kubeflow_hostname="https://kfp.invalid")
    _, spec = _compile_to_kfp(orchestrator_component(KubeflowOrchestrator, config, "kubeflow"))
    assert not [step for step in GPU_STEPS if "accelerator" in _resources(spec, step)]
    assert float(_resources(spec, "train_dpo")["cpuLimit"]) == 90

@pytest.fixture(scope="module")
def kubeflow_stack_ids(local_stack):
    """Stacks with a registered Kubeflow orchestrator (with and without the accelerator
    type) and an S3 artifact store in the isolated store; registration needs no cluster."""
    from zenml.client import Client
    from zenml.enums import StackComponentType as Kind

    from infra.local_stack import STACK

    client = Client()
    local = {kind: str(found[0].id) for kind, found in client.get_stack(STACK).components.items()}

    def component(name, kind, flavor, configuration):
        found = client.list_stack_components(name=name, type=kind).items
        return str((found[0] if found else client.create_stack_component(name, flavor, kind, configuration)).id)

    from infra.kubeflow_gpu import FLAVOR

    if not client.list_flavors(name=FLAVOR).items:
        client.create_flavor(source="infra.kubeflow_gpu.KubeflowGPUOrchestratorFlavor", component_type=Kind.ORCHESTRATOR)
    s3 = component("test-s3", Kind.ARTIFACT_STORE, "s3", {"path": "s3://timewarp-test-artifacts"})
    ids = {}
    for flavor in (FLAVOR, "kubeflow"):
        orchestrator = component(f"test-{flavor}", Kind.ORCHESTRATOR, flavor, {"kubeflow_hostname": "https://kfp.invalid"})
        found = client.list_stacks(name=f"test-{flavor}").items
        ids[flavor] = str((found[0] if found else client.create_stack(
            name=f"test-{flavor}", components={**local, Kind.ORCHESTRATOR: orchestrator, Kind.ARTIFACT_STORE: s3})).id)
    return ids


def test_preflight_wants_gpu_requests_in_the_form_kubeflow_compiles(kubeflow_stack_ids, monkeypatch, tmp_path):
    import yaml

    from pipelines.preflight import PreflightError
    from pipelines.timewarp_explicit import timewarp_explicit

    monkeypatch.setenv("ZENML_ACTIVE_STACK_ID", kubeflow_stack_ids["kubeflow_gpu"])
    timewarp_explicit.with_options(config_path=str(CONFIG)).prepare()  # the config as written passes
    config = yaml.safe_load(CONFIG.read_text())
    config["steps"]["train_dpo"] = {"settings": {"resources": {"cpu_count": 90}}}
    edited = tmp_path / "run.yaml"
    edited.write_text(yaml.safe_dump(config))
    with pytest.raises(PreflightError, match=r"step train_dpo trains on GPU .* requests no GPU") as refused:
        timewarp_explicit.with_options(config_path=str(edited)).prepare()
    assert "step train_dpo needs GPUs, but has no accelerator type" in str(refused.value)
    monkeypatch.setenv("ZENML_ACTIVE_STACK_ID", kubeflow_stack_ids["kubeflow"])
    with pytest.raises(PreflightError, match=r"step train_dpo .* ZenML 0.98's kubeflow flavor compiles no GPU request"):
        timewarp_explicit.with_options(config_path=str(CONFIG)).prepare()

"""The production Kubernetes path (configs/explicit_k8s.yaml, infra/register_k8s_stack.sh,
infra/k8s/timewarp.yaml) against ZenML 0.98 and the Kubernetes schemas, and the preflight
that refuses bad input before any pod starts (pure checks, then real run attempts on stacks
with a Kubernetes orchestrator in the isolated test store)."""

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from pipelines.pod_checks import gpu_request_problems, kubeflow_gpu_problems, local_artifact_store_problem
from pipelines.preflight import PreflightError, kubernetes_pod_settings_problems
from tests.conftest import REPO_ROOT

CONFIG = REPO_ROOT / "configs" / "explicit_k8s.yaml"
#: The Kubernetes version whose schemas the manifests must pass (kubernetes-validate --strict).
KUBERNETES_VERSION = "1.33.0"
TRAINING = ("train_sft", "train_dpo", "continue_sft")
EVALUATION = ("evaluate_base", "evaluate_trained", "evaluate_control", "evaluate_champion")


def _config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def _pod(step: str) -> dict:
    """The step's pod settings as ZenML merges them: the step's over the pipeline's."""
    from zenml.utils.dict_utils import recursive_update

    config = _config()
    pipeline_level = config["settings"]["orchestrator"]["pod_settings"]
    return recursive_update(dict(pipeline_level), config["steps"][step]["settings"]["orchestrator"]["pod_settings"])


# -- pure checks ---------------------------------------------------------------------------

def test_unknown_pod_settings_key_names_the_step_and_the_valid_keys():
    problems = kubernetes_pod_settings_problems("step train_dpo", {"resourcez": {"limits": {"nvidia.com/gpu": "8"}}})
    assert len(problems) == 1
    assert "train_dpo" in problems[0] and "'resourcez'" in problems[0] and "'resources'" in problems[0]


def test_kubernetes_objects_resources_and_mounts_are_checked_against_the_schema():
    problems = kubernetes_pod_settings_problems("step evaluate_base", {
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimt": "1Gi"}}],
        "volume_mounts": [{"name": "checkpoints", "mountPath": "/mnt/checkpoints"}],
        "tolerations": [{"key": "nvidia.com/gpu", "operater": "Exists"}],
        "resources": {"limitz": {"cpu": "1"}, "requests": {"memory": "16 GB"}, "limits": {"nvidia.com/gpu": 8}},
    })
    text = "\n".join(problems)
    assert len(problems) == 6, text
    assert 'limits.nvidia.com/gpu = 8 is not a Kubernetes quantity: write it as a string: "8"' in text
    assert "volumes[0]" in text and "sizeLimt" in text
    assert "tolerations[0]" in text and "operater" in text
    assert "'limitz'" in text and "'16 GB' is not a Kubernetes quantity" in text
    assert "mounts 'checkpoints', which is not in its volumes" in text


def test_gpu_and_artifact_store_checks():
    assert gpu_request_problems("train_dpo", {"resources": {"limits": {"nvidia.com/gpu": "8"}}}) == []
    [problem] = gpu_request_problems("train_sft", {"resources": {"requests": {"cpu": "8"}}})
    assert "train_sft" in problem and "resources.limits.nvidia.com/gpu" in problem and "use_cpu" in problem
    assert local_artifact_store_problem("kubernetes", True, False) == []
    assert local_artifact_store_problem("local", False, True) == []
    [problem] = local_artifact_store_problem("kubernetes", True, True)
    assert "artifact store is local" in problem and "register_k8s_stack.sh" in problem
    assert kubeflow_gpu_problems("train_dpo", "kubeflow_gpu", 8, "nvidia.com/gpu") == []
    assert len(kubeflow_gpu_problems("train_dpo", "kubeflow_gpu", None, None)) == 2
    [problem] = kubeflow_gpu_problems("train_dpo", "kubeflow", 8, "nvidia.com/gpu")
    assert "kubeflow_gpu flavor (infra/kubeflow_gpu.py)" in problem


# -- the production config -----------------------------------------------------------------

def test_every_heavy_step_gets_resources_gpus_shm_checkpoints_and_retries():
    from zenml.config.pipeline_run_configuration import PipelineRunConfiguration

    config = _config()
    PipelineRunConfiguration(**config)  # ZenML accepts the file
    groups = config["parameters"]["shard_groups"]
    prepare = [f"prepare_videos_{g}" for g in range(groups)]
    assert set(config["steps"]) == {*prepare, *TRAINING, *EVALUATION}
    assert config["retry"]["max_retries"] >= 1
    for step in config["steps"]:
        pod = _pod(step)
        assert kubernetes_pod_settings_problems(f"step {step}", pod) == [], step
        assert {"cpu", "memory"} <= set(pod["resources"]["requests"]), step
        assert pod["resources"]["limits"]["memory"], step
    for step in (*TRAINING, *EVALUATION):
        pod = _pod(step)
        assert int(pod["resources"]["limits"]["nvidia.com/gpu"]) >= 1, step
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        mounts = {mount["mountPath"]: mount["name"] for mount in pod["volume_mounts"]}
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory", step
        assert config["steps"][step]["retry"]["max_retries"] >= 2, step
    for step in TRAINING:
        pod = _pod(step)
        mounts = {m["mountPath"]: m["name"] for m in pod["volume_mounts"]}
        volume = {v["name"]: v for v in pod["volumes"]}[mounts[config["parameters"]["checkpoint_root"]]]
        assert volume["persistentVolumeClaim"]["claimName"] == "timewarp-checkpoints", step
    assert int(_pod("train_dpo")["resources"]["limits"]["nvidia.com/gpu"]) == 8


def test_zenml_resolves_each_steps_settings_as_the_preflight_reads_them(local_stack):
    """Compiled for a Kubernetes orchestrator: every step of the run gets the pod settings
    and retries the config gives it (its own over the pipeline's); configured steps the run
    does not have are ignored."""
    from zenml.integrations.kubernetes.flavors.kubernetes_orchestrator_flavor import KubernetesOrchestratorConfig
    from zenml.integrations.kubernetes.orchestrators.kubernetes_orchestrator import KubernetesOrchestrator

    from pipelines.timewarp_explicit import timewarp_explicit
    from tests.offline_compile import compile_offline, orchestrator_component

    config = _config()
    orchestrator = orchestrator_component(KubernetesOrchestrator, KubernetesOrchestratorConfig(
        kubernetes_context="timewarp-eks", skip_local_validations=True), "kubernetes")
    steps = compile_offline(timewarp_explicit, CONFIG, orchestrator).step_configurations
    assert set(config["steps"]) - set(steps) == {"train_sft", "continue_sft", "evaluate_control"}
    for name, compiled in steps.items():
        pod_settings = orchestrator.get_settings(compiled).pod_settings.model_dump(exclude_defaults=True)
        expected = _pod(name) if name in config["steps"] else config["settings"]["orchestrator"]["pod_settings"]
        assert pod_settings == expected, name
        retry = config["steps"].get(name, {}).get("retry", config["retry"])
        assert compiled.config.retry.max_retries == retry["max_retries"], name


def test_step_jobs_built_by_zenml_pass_the_kubernetes_schema():
    """Each heavy step's Job as ZenML's own manifest builders make it from the config
    (backoffLimit from its retries), validated strictly: unknown fields fail."""
    import kubernetes_validate
    from kubernetes.client import ApiClient
    from zenml.integrations.kubernetes.manifest_utils import build_job_manifest, build_pod_manifest, pod_template_manifest_from_pod
    from zenml.integrations.kubernetes.pod_settings import KubernetesPodSettings

    config = _config()
    for step, step_config in config["steps"].items():
        pod = build_pod_manifest(
            pod_name=None, image_name="123456789012.dkr.ecr.eu-west-1.amazonaws.com/timewarp:1", command=["python"],
            args=["-m", "zenml.entrypoints.entrypoint"], privileged=False, pod_settings=KubernetesPodSettings(**_pod(step)),
            service_account_name=config["settings"]["orchestrator"]["step_pod_service_account_name"],
        )
        job = build_job_manifest(
            job_name=f"timewarp-{step.replace('_', '-')}", pod_template=pod_template_manifest_from_pod(pod),
            backoff_limit=step_config.get("retry", config["retry"])["max_retries"],
        )
        # The client posts it to the Job endpoint, which implies these two.
        manifest = {"apiVersion": "batch/v1", "kind": "Job", **ApiClient().sanitize_for_serialization(job)}
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        container = manifest["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"] == _pod(step)["resources"]


def test_namespace_objects_pass_the_kubernetes_schema():
    import kubernetes_validate

    text = (REPO_ROOT / "infra" / "k8s" / "timewarp.yaml").read_text()
    for name, value in {"EFS_FILE_SYSTEM_ID": "fs-0123456789abcdef0", "K8S_NAMESPACE": "timewarp",
                        "POD_ROLE_ARN": "arn:aws:iam::123456789012:role/timewarp-pods"}.items():
        text = text.replace("${" + name + "}", value)
    objects = {item["kind"]: item for item in yaml.safe_load_all(text)}
    for item in objects.values():
        kubernetes_validate.validate(item, KUBERNETES_VERSION, strict=True)
    assert objects["PersistentVolumeClaim"]["metadata"]["name"] == "timewarp-checkpoints"
    assert objects["PersistentVolumeClaim"]["spec"]["storageClassName"] == objects["StorageClass"]["metadata"]["name"]
    assert objects["ServiceAccount"]["metadata"]["name"] == _config()["settings"]["orchestrator"]["service_account_name"]


def test_image_installs_the_project_with_its_extras_after_the_code_is_copied():
    from zenml.config import DockerSettings
    from zenml.config.build_configuration import BuildConfiguration
    from zenml.utils.pipeline_docker_image_builder import PipelineDockerImageBuilder

    settings = DockerSettings(**_config()["settings"]["docker"])
    assert BuildConfiguration(key="orchestrator", settings=settings).should_include_files(code_repository=None)
    dockerfile = PipelineDockerImageBuilder._generate_zenml_pipeline_dockerfile(
        parent_image="zenmldocker/zenml:0.98.0-py3.11", docker_settings=settings,
    ).splitlines()
    install = next(i for i, line in enumerate(dockerfile) if "pip install" in line and "'.[" in line)
    assert dockerfile.index("COPY . .") < install
    assert "models" in dockerfile[install] and "k8s" in dockerfile[install]
    assert "ENV DS_BUILD_OPS='0'" in dockerfile
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".timewarp", ".git"} <= set(ignored)


def test_one_cloud_eks_across_config_volume_and_stack_script():
    config_text = CONFIG.read_text()
    script = (REPO_ROOT / "infra" / "register_k8s_stack.sh").read_text()
    for other_cloud in ("gke", "cloud.google.com", "gcr.io", "pkg.dev", "azure"):
        assert other_cloud not in config_text.lower() and other_cloud not in script.lower()
    selectors = {key for step in _config()["steps"] for key in _pod(step).get("node_selectors", {})}
    assert selectors <= {"eks.amazonaws.com/nodegroup", "node.kubernetes.io/instance-type"}
    assert "--type aws" in script and "--flavor=aws" in script and "efs.csi.aws.com" in (REPO_ROOT / "infra" / "k8s" / "timewarp.yaml").read_text()


def test_stack_script_is_idempotent_and_keeps_credentials_out_of_files(tmp_path):
    """The script against recording stand-ins for zenml/kubectl/python: everything is
    registered once, a second run registers nothing, the applied objects have their values."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir(), state.mkdir()
    (bin_dir / "zenml").write_text(f"""#!/usr/bin/env bash
echo "zenml $*" >> {state}/calls
case "$2" in
  describe|get) [ -e "{state}/$1-$3" ] ;;
  register|create) touch "{state}/$1-$3" ;;
esac
""")
    (bin_dir / "kubectl").write_text(f'#!/usr/bin/env bash\necho "kubectl $*" >> {state}/calls\n'
                                     f'if [ "$1" = apply ]; then cat >> {state}/applied; else echo "kind: Namespace"; fi\n')
    (bin_dir / "python").write_text("#!/usr/bin/env bash\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "AWS_REGION": "eu-west-1", "EKS_CLUSTER": "timewarp",
           "ARTIFACT_BUCKET": "s3://timewarp-artifacts/zenml", "ECR_REGISTRY": "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
           "MLFLOW_TRACKING_URI": "https://mlflow.example.org", "EFS_FILE_SYSTEM_ID": "fs-0123456789abcdef0",
           "POD_ROLE_ARN": "arn:aws:iam::123456789012:role/timewarp-pods", "HOME": str(tmp_path)}
    script = str(REPO_ROOT / "infra" / "register_k8s_stack.sh")
    first = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    calls = (state / "calls").read_text()
    registered = _registrations(calls)
    assert len(registered) == 9, registered  # connector, secret, 6 components, stack
    assert "--resource-id=s3://timewarp-artifacts" in calls and "--connector=timewarp-aws" in calls
    (state / "calls").write_text("")
    second = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert _registrations((state / "calls").read_text()) == []
    applied = (state / "applied").read_text()
    assert "fs-0123456789abcdef0" in applied and "${" not in applied
    missing = subprocess.run(["bash", script], env={**env, "EKS_CLUSTER": ""}, capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "EKS_CLUSTER" in missing.stderr


def _registrations(calls: str) -> list[str]:
    return [line for line in calls.splitlines() if line.startswith("zenml ") and line.split()[2] in ("register", "create")]


# -- real run attempts: the preflight fails before any step runs ---------------------------

@pytest.fixture(scope="module")
def k8s_stacks(local_stack):
    """Two stacks with a Kubernetes orchestrator in the isolated store (registration needs
    no cluster): one with the local artifact store, one with an S3 one; yields their ids."""
    from zenml.client import Client
    from zenml.enums import StackComponentType as Kind

    from infra.local_stack import STACK

    client = Client()
    local = {kind: str(found[0].id) for kind, found in client.get_stack(STACK).components.items()}

    def component(name, kind, flavor, configuration):
        found = client.list_stack_components(name=name, type=kind).items
        return str((found[0] if found else client.create_stack_component(name, flavor, kind, configuration)).id)

    orchestrator = component("test-k8s", Kind.ORCHESTRATOR, "kubernetes",
                             {"kubernetes_context": "timewarp-test", "skip_local_validations": True})
    s3 = component("test-s3", Kind.ARTIFACT_STORE, "s3", {"path": "s3://timewarp-test-artifacts"})
    ids = {}
    for name, store in (("test-k8s-local-store", local[Kind.ARTIFACT_STORE]), ("test-k8s-s3", s3)):
        found = client.list_stacks(name=name).items
        stack = found[0] if found else client.create_stack(
            name=name, components={**local, Kind.ORCHESTRATOR: orchestrator, Kind.ARTIFACT_STORE: store})
        ids[name] = str(stack.id)
    return ids


def _runs(pipeline_name: str) -> int:
    from zenml.client import Client

    return Client().list_pipeline_runs(pipeline=pipeline_name, size=1).total


def _write(tmp_path: Path, config: dict) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_unknown_pod_settings_key_fails_before_any_step(local_stack, tmp_path):
    from pipelines.timewarp_data import timewarp_data

    config = _write(tmp_path, {"parameters": {"sample_videos": 4}, "steps": {"prepare_videos": {"settings": {
        "orchestrator": {"pod_settings": {"resourcez": {"requests": {"cpu": "4"}}}}}}}})
    before = _runs("timewarp_data")
    with pytest.raises(PreflightError, match=r"step prepare_videos: pod_settings has the unknown key 'resourcez'"):
        timewarp_data.with_options(config_path=config)()
    assert _runs("timewarp_data") == before


def test_kubernetes_orchestrator_with_a_local_artifact_store_fails_before_any_step(k8s_stacks, monkeypatch, tmp_path):
    from pipelines.timewarp_data import timewarp_data

    monkeypatch.setenv("ZENML_ACTIVE_STACK_ID", k8s_stacks["test-k8s-local-store"])
    before = _runs("timewarp_data")
    with pytest.raises(PreflightError, match=r"orchestrator \(kubernetes\) runs steps in pods, but its artifact store is local"):
        timewarp_data.with_options(config_path=_write(tmp_path, {"parameters": {"sample_videos": 4}}))()
    assert _runs("timewarp_data") == before


def test_unknown_orchestrator_settings_key_fails_before_any_step(k8s_stacks, monkeypatch, tmp_path):
    from pipelines.timewarp_data import timewarp_data

    monkeypatch.setenv("ZENML_ACTIVE_STACK_ID", k8s_stacks["test-k8s-s3"])
    config = _write(tmp_path, {"parameters": {"sample_videos": 4},
                               "settings": {"orchestrator": {"pod_settingz": {"resources": {}}}}})
    with pytest.raises(PreflightError, match=r"the pipeline's settings: orchestrator settings have the unknown key 'pod_settingz'"):
        timewarp_data.with_options(config_path=config)()


def test_gpu_training_step_without_a_gpu_request_fails_before_any_step(k8s_stacks, monkeypatch, tmp_path):
    from pipelines.timewarp_explicit import timewarp_explicit

    monkeypatch.setenv("ZENML_ACTIVE_STACK_ID", k8s_stacks["test-k8s-s3"])
    config = _config()
    del config["steps"]["train_dpo"]["settings"]["orchestrator"]["pod_settings"]["resources"]["limits"]["nvidia.com/gpu"]
    before = _runs("timewarp_explicit")
    with pytest.raises(PreflightError, match=r"step train_dpo trains on GPU .* requests no GPU") as refused:
        timewarp_explicit.with_options(config_path=_write(tmp_path, config))()
    assert "train_sft" not in str(refused.value)  # not in this run (no SFT stage)
    assert _runs("timewarp_explicit") == before
    # The production config as written passes the preflight on this stack.
    timewarp_explicit.with_options(config_path=str(CONFIG)).prepare()

#!/usr/bin/env bash
# Register the production stack `timewarp-k8s` on Amazon EKS (configs/explicit_k8s.yaml):
# Kubernetes orchestrator on the EKS cluster, S3 artifact store, ECR container registry, a
# local image builder (Docker on this machine), MLflow tracking server + model registry, and
# the namespace objects the pods need (infra/k8s/timewarp.yaml).
#
# Credentials: one ZenML AWS service connector, auto-configured from this machine's AWS
# credentials (profile, SSO or role) and kept by the ZenML server, serves the cluster, the
# bucket and the registry; MLflow's credentials are a ZenML secret. Nothing is written to a
# file. Needs a remote ZenML server (`zenml login <url>`), `pip install -e '.[k8s]'` (it
# includes the AWS service connector), Docker and kubectl. Idempotent: what exists is kept.
set -euo pipefail
: "${AWS_REGION:?set AWS_REGION, e.g. eu-west-1}"
: "${EKS_CLUSTER:?set EKS_CLUSTER, the EKS cluster name}"
: "${ARTIFACT_BUCKET:?set ARTIFACT_BUCKET, e.g. s3://timewarp-artifacts}"
: "${ECR_REGISTRY:?set ECR_REGISTRY, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com}"
: "${MLFLOW_TRACKING_URI:?set MLFLOW_TRACKING_URI, e.g. https://mlflow.example.org}"
: "${EFS_FILE_SYSTEM_ID:?set EFS_FILE_SYSTEM_ID, the EFS file system for checkpoints (fs-...)}"
: "${POD_ROLE_ARN:?set POD_ROLE_ARN, the IAM role the pods assume (reads the s3:// data)}"
export K8S_NAMESPACE="${K8S_NAMESPACE:-timewarp}"
export AWS_REGION EFS_FILE_SYSTEM_ID POD_ROLE_ARN
CONNECTOR=timewarp-aws
BUCKET="${ARTIFACT_BUCKET#s3://}"; BUCKET="s3://${BUCKET%%/*}"   # the connector's resource: the bucket
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

python -c "import kubernetes, s3fs, boto3, aws_profile_manager" 2>/dev/null || {
  echo "missing packages: pip install -e '.[k8s]'" >&2; exit 1; }

have_component() { zenml "$1" describe "$2" >/dev/null 2>&1; }

zenml service-connector describe "$CONNECTOR" >/dev/null 2>&1 || zenml service-connector register "$CONNECTOR" --type aws --auto-configure
zenml secret get mlflow_secret >/dev/null 2>&1 || zenml secret create mlflow_secret \
  --username="${MLFLOW_TRACKING_USERNAME:-}" --password="${MLFLOW_TRACKING_PASSWORD:-}"

# The pods' ZenML API token goes into a Kubernetes Secret, not the Job or CronJob manifest (a
# schedule's token is valid as long as the schedule).
have_component orchestrator timewarp-k8s || zenml orchestrator register timewarp-k8s --flavor=kubernetes \
  --kubernetes_namespace="$K8S_NAMESPACE" --pass_zenml_token_as_secret=True --connector="$CONNECTOR" \
  --resource-id="$EKS_CLUSTER"
have_component artifact-store timewarp-s3 || zenml artifact-store register timewarp-s3 --flavor=s3 \
  --path="$ARTIFACT_BUCKET" --connector="$CONNECTOR" --resource-id="$BUCKET"
have_component container-registry timewarp-ecr || zenml container-registry register timewarp-ecr --flavor=aws \
  --uri="$ECR_REGISTRY" --default_repository=timewarp --connector="$CONNECTOR" --resource-id="$ECR_REGISTRY"
have_component image-builder timewarp-builder || zenml image-builder register timewarp-builder --flavor=local
have_component experiment-tracker timewarp-mlflow-server || zenml experiment-tracker register timewarp-mlflow-server \
  --flavor=mlflow --tracking_uri="$MLFLOW_TRACKING_URI" \
  --tracking_username='{{mlflow_secret.username}}' --tracking_password='{{mlflow_secret.password}}'
have_component model-registry timewarp-mlflow-registry || zenml model-registry register timewarp-mlflow-registry --flavor=mlflow
zenml stack describe timewarp-k8s >/dev/null 2>&1 || zenml stack register timewarp-k8s \
  -o timewarp-k8s -a timewarp-s3 -c timewarp-ecr -i timewarp-builder \
  -e timewarp-mlflow-server -r timewarp-mlflow-registry

# kubectl through the same connector (short-lived credentials), then the namespace, the
# pods' service account (IRSA) with its role binding, and the checkpoint volume.
zenml service-connector login "$CONNECTOR" --resource-type kubernetes-cluster --resource-id "$EKS_CLUSTER"
kubectl create namespace "$K8S_NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
sed -e "s|\${EFS_FILE_SYSTEM_ID}|$EFS_FILE_SYSTEM_ID|g" -e "s|\${K8S_NAMESPACE}|$K8S_NAMESPACE|g" \
  -e "s|\${POD_ROLE_ARN}|$POD_ROLE_ARN|g" "$HERE/k8s/timewarp.yaml" | kubectl apply -f -
echo "stack timewarp-k8s ready: zenml stack set timewarp-k8s && zenml pipeline run timewarp_explicit -c configs/explicit_k8s.yaml"

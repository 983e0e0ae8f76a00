#!/usr/bin/env bash
# Register the production stack: Kubernetes orchestrator, S3 artifact store, a container
# registry and image builder, and MLflow (tracking server + model registry). Needs a remote ZenML server (`zenml login <url>`) and the
# kubernetes and s3 integrations. Credentials come from the environment / your kubeconfig
# and cloud credentials chain, never from this file. Idempotent: existing components are kept.
set -euo pipefail
: "${KUBE_CONTEXT:?set KUBE_CONTEXT}"           # kubectl context of the cluster
: "${ARTIFACT_BUCKET:?set ARTIFACT_BUCKET}"     # e.g. s3://timewarp-artifacts
: "${CONTAINER_REGISTRY:?set CONTAINER_REGISTRY}" # e.g. 123456789.dkr.ecr.eu-west-1.amazonaws.com
: "${MLFLOW_TRACKING_URI:?set MLFLOW_TRACKING_URI}" # the MLflow tracking server, e.g. https://mlflow.example.org
NAMESPACE="${K8S_NAMESPACE:-timewarp}"

zenml integration install kubernetes s3 -y
# MLflow credentials (MLFLOW_TRACKING_USERNAME / _PASSWORD or a token) go in a ZenML secret.
zenml secret get mlflow_secret >/dev/null 2>&1 || zenml secret create mlflow_secret \
  --username="${MLFLOW_TRACKING_USERNAME:-}" --password="${MLFLOW_TRACKING_PASSWORD:-}"
have() { zenml "$1" describe "$2" >/dev/null 2>&1; }
have orchestrator timewarp-k8s || zenml orchestrator register timewarp-k8s --flavor=kubernetes \
  --kubernetes_context="$KUBE_CONTEXT" --kubernetes_namespace="$NAMESPACE"
have artifact-store timewarp-s3 || zenml artifact-store register timewarp-s3 --flavor=s3 --path="$ARTIFACT_BUCKET"
have container-registry timewarp-registry || zenml container-registry register timewarp-registry \
  --flavor=default --uri="$CONTAINER_REGISTRY"
have experiment-tracker timewarp-mlflow-server || zenml experiment-tracker register timewarp-mlflow-server \
  --flavor=mlflow --tracking_uri="$MLFLOW_TRACKING_URI" \
  --tracking_username='{{mlflow_secret.username}}' --tracking_password='{{mlflow_secret.password}}'
have model-registry timewarp-mlflow-registry || zenml model-registry register timewarp-mlflow-registry --flavor=mlflow
have image-builder timewarp-builder || zenml image-builder register timewarp-builder --flavor=local
zenml stack describe timewarp-k8s >/dev/null 2>&1 || zenml stack register timewarp-k8s \
  -o timewarp-k8s -a timewarp-s3 -c timewarp-registry -i timewarp-builder \
  -e timewarp-mlflow-server -r timewarp-mlflow-registry
echo "stack timewarp-k8s ready: zenml stack set timewarp-k8s"

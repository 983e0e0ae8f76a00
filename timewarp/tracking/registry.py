"""Registering trained models in the MLflow model registry and moving the ``champion``
alias through the promotion gate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from timewarp.tracking.promotion import PromotionDecision, Scores, decide

# Logged as "model from code": nothing is pickled.
MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
CHAMPION = "champion"
CHALLENGER = "challenger"
BENCHMARK_TAG = "benchmark_version"


@dataclass(frozen=True)
class Registration:
    model_name: str
    version: str
    decision: PromotionDecision
    alias: str


def log_model_folder(folder: str | Path, artifact_name: str = "model") -> str:
    """Log the folder as an MLflow model in the active run; return its model URI."""
    info = mlflow.pyfunc.log_model(
        name=artifact_name, python_model=str(MODEL_CODE), artifacts={"model_dir": str(folder)}
    )
    return info.model_uri


def champion_scores(client: MlflowClient, model_name: str, metrics: tuple[str, ...]) -> Scores | None:
    try:
        version = client.get_model_version_by_alias(model_name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None
    tags = version.tags
    return Scores(tags.get(BENCHMARK_TAG, ""), {m: float(tags[m]) for m in metrics if m in tags})


def register_and_gate(
    model_uri: str,
    model_name: str,
    scores: Scores,
    metrics: tuple[str, ...],
    extra_tags: dict[str, str] | None = None,
) -> Registration:
    """Register a new version of ``model_name``; it takes the ``champion`` alias only when
    the gate says so, else ``challenger`` with the reason as a tag."""
    client = MlflowClient()
    previous = champion_scores(client, model_name, metrics)
    version = mlflow.register_model(model_uri, model_name).version
    tags = {BENCHMARK_TAG: scores.benchmark_version, **{m: f"{v:.6f}" for m, v in scores.metrics.items()}}
    decision = decide(scores, previous, metrics)
    alias = CHAMPION if decision.promote else CHALLENGER
    for key, value in {**tags, **(extra_tags or {}), "promotion": alias, "promotion_reason": decision.reason}.items():
        client.set_model_version_tag(model_name, version, key, value)
    client.set_registered_model_alias(model_name, alias, version)
    return Registration(model_name, str(version), decision, alias)

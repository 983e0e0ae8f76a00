"""Registering trained models in the MLflow model registry and moving the ``champion``
alias as the promotion gate (:mod:`timewarp.tracking.promotion`) decides."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from timewarp.tracking.promotion import GatePolicy, PromotionDecision

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class Registration:
    model_name: str
    version: str
    decision: PromotionDecision
    alias: str


def current_champion(model_name: str, client: MlflowClient | None = None) -> ModelVersion | None:
    """The version holding the ``champion`` alias, or None (no such model or alias)."""
    try:
        return (client or MlflowClient()).get_model_version_by_alias(model_name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None


def decision_tags(decision: PromotionDecision, policy: GatePolicy, benchmark_version: str) -> dict[str, str]:
    """What the registry shows about a version's promotion: the decision, why, on which
    benchmark, with which scorer, and both models' scores with the difference's interval."""
    tags = {
        "promotion": CHAMPION if decision.promote else CHALLENGER,
        "promotion_reason": decision.reason,
        "benchmark_version": benchmark_version,
        "gate_scorer": policy.scorer,
        "gate_metrics": ",".join(policy.metrics),
        "gate_margin": f"{policy.margin:g}",
    }
    for row in decision.rows(policy):
        d = row.difference
        tags.update({
            f"candidate.{row.metric}": f"{row.trained.value:.6f}",
            f"champion.{row.metric}": f"{row.base.value:.6f}",
            f"difference.{row.metric}": f"{d.value:.6f} [{d.low:.6f}, {d.high:.6f}]",
        })
    return tags


def register_and_gate(
    model_uri: str,
    model_name: str,
    decision: PromotionDecision,
    tags: dict[str, str],
    scored_champion: str | None,
) -> Registration:
    """Register a new version of ``model_name``; it takes the ``champion`` alias when the
    gate promoted it, else ``challenger``. ``scored_champion`` is the champion version the
    decision compared against (None: there was none): if the alias moved since (another run
    registered meanwhile), the decision is void and the version stays challenger."""
    client = MlflowClient()
    now = current_champion(model_name, client)
    if (str(now.version) if now else None) != scored_champion:
        decision = PromotionDecision(
            False,
            f"the champion changed to version {now.version if now else 'none'} while this run compared against "
            f"{scored_champion or 'none'}; re-run to compare against the new champion",
        )
        tags = {**tags, "promotion": CHALLENGER, "promotion_reason": decision.reason}
    version = mlflow.register_model(model_uri, model_name).version
    alias = CHAMPION if decision.promote else CHALLENGER
    for key, value in {**tags, "compared_with": f"version {scored_champion}" if scored_champion else "none"}.items():
        client.set_model_version_tag(model_name, version, key, value)
    client.set_registered_model_alias(model_name, alias, version)
    if decision.promote and scored_champion:
        client.set_model_version_tag(model_name, scored_champion, "replaced_by", f"version {version}")
    return Registration(model_name, str(version), decision, alias)

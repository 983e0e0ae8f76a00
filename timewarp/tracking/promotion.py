"""The promotion gate: a new model version becomes the champion only when it beats the
current champion on the same benchmark version."""

from __future__ import annotations

from dataclasses import dataclass

# Both variants must improve: a model that gains on normal videos by ignoring order would
# lose on the shuffled ones.
GATED_METRICS = ("accuracy_normal", "accuracy_shuffled")


@dataclass(frozen=True)
class Scores:
    benchmark_version: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str


def decide(candidate: Scores, champion: Scores | None, metrics: tuple[str, ...] = GATED_METRICS) -> PromotionDecision:
    missing = [m for m in metrics if m not in candidate.metrics]
    if missing:
        return PromotionDecision(False, f"candidate lacks metrics {missing}")
    if champion is None:
        return PromotionDecision(True, "no champion yet")
    if champion.benchmark_version != candidate.benchmark_version:
        return PromotionDecision(
            False,
            f"champion was scored on benchmark {champion.benchmark_version}, candidate on "
            f"{candidate.benchmark_version}: not comparable",
        )
    worse = [
        f"{m} {candidate.metrics[m]:.4f} <= champion {champion.metrics.get(m, float('-inf')):.4f}"
        for m in metrics
        if not candidate.metrics[m] > champion.metrics.get(m, float("-inf"))
    ]
    if worse:
        return PromotionDecision(False, "does not beat the champion: " + "; ".join(worse))
    gains = ", ".join(f"{m} {champion.metrics[m]:.4f} -> {candidate.metrics[m]:.4f}" for m in metrics)
    return PromotionDecision(True, f"beats the champion: {gains}")

"""The promotion gate: a new model version becomes the champion only when it beats the
current champion, both scored on the same items with the same scorer, by more than a margin
that noise cannot explain.

The champion is re-scored on the candidate's benchmark in the same run (the
``evaluate_champion`` step), so a retrain on new data is compared on the new items, never
against a number from an older benchmark. The comparison is paired (both models' results on
the same items) and its interval clustered by video (:mod:`timewarp.evaluation.report`):
the candidate is promoted when, on every gated metric, the LOWER bound of the 95% interval
of (candidate - champion) exceeds ``margin``. With the default margin 0 a candidate must be
better beyond doubt; a negative margin (e.g. -0.01) promotes a candidate that is not worse
by more than that (a retrain on fresher data that merely holds the line).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from timewarp.evaluation.results import ComparisonReport, ComparisonRow, ModelEvaluation, compare

# Both variants must improve: a model that gains on normal videos by ignoring order would
# lose on the shuffled ones.
GATED_METRICS = ("accuracy_normal", "accuracy_shuffled")
GATEABLE_METRICS = ("accuracy_normal", "accuracy_shuffled", "consistency")


@dataclass(frozen=True)
class GatePolicy:
    """What the gate compares and how much better a candidate must be."""

    scorer: str = "text_loglik"  # the scorer whose numbers decide
    metrics: tuple[str, ...] = GATED_METRICS  # every one must clear the margin
    margin: float = 0.0  # the 95% lower bound of (candidate - champion) must exceed this

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in GATEABLE_METRICS]
        if unknown or not self.metrics:
            raise ValueError(f"gate metrics must be a non-empty subset of {GATEABLE_METRICS}, got {list(self.metrics)}")
        if not -1.0 < self.margin < 1.0:
            raise ValueError(f"the gate margin is a difference of accuracies, in (-1, 1); got {self.margin}")


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    # The paired comparison the decision rests on (champion = base, candidate = trained),
    # None when there was nothing to compare.
    comparison: ComparisonReport | None = field(default=None, compare=False)

    def rows(self, policy: GatePolicy) -> list[ComparisonRow]:
        if self.comparison is None:
            return []
        return [self.comparison.row(policy.scorer, metric) for metric in policy.metrics]


def decide(candidate: ModelEvaluation, champion: ModelEvaluation | None, policy: GatePolicy) -> PromotionDecision:
    """Promote ``candidate`` over ``champion`` (None: there is no champion yet)?

    Refuses to compare (no promotion, the reason says why) when the two were scored on
    different benchmarks or the champion lacks the gate's scorer."""
    if policy.scorer not in candidate.results:
        return PromotionDecision(
            False, f"the candidate was not scored with the gate scorer {policy.scorer} (scored: {sorted(candidate.results)})"
        )
    if champion is None:
        return PromotionDecision(True, "no champion yet")
    if champion.benchmark_version != candidate.benchmark_version:
        return PromotionDecision(
            False,
            f"not comparable: the champion was scored on benchmark {champion.benchmark_version}, the candidate on "
            f"{candidate.benchmark_version}; re-score the champion on the candidate's benchmark",
        )
    if policy.scorer not in champion.results:
        return PromotionDecision(
            False,
            f"not comparable: the champion was scored with {sorted(champion.results)}, the gate compares "
            f"{policy.scorer}; re-score the champion with {policy.scorer}",
        )
    report = compare(champion, candidate)
    rows = [report.row(policy.scorer, metric) for metric in policy.metrics]
    failing = [r for r in rows if not r.difference.low > policy.margin]

    def described(r: ComparisonRow) -> str:
        d = r.difference
        return (f"{r.metric} {r.trained.value:.1%} vs champion {r.base.value:.1%}, "
                f"difference {d.value:+.1%} [{d.low:+.1%}, {d.high:+.1%}]")

    bound = f"the 95% lower bound must exceed {policy.margin:+.1%} ({policy.scorer}, clustered by video)"
    if failing:
        return PromotionDecision(False, "does not clear the margin: " + "; ".join(map(described, failing)) + f"; {bound}",
                                 report)
    return PromotionDecision(True, "beats the champion: " + "; ".join(map(described, rows)) + f"; {bound}", report)

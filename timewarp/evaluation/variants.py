"""The paper's comparison of methods: one row per arm (SFT, Base-DPO, Combined,
TimeWarp-Implicit, TimeWarp-Explicit), one column per scorer and metric, each cell an
accuracy with its 95% interval and the arm's paired difference from the SFT row (intervals
clustered by video, as every interval here)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from timewarp.evaluation.report import Estimate
from timewarp.evaluation.results import ModelEvaluation, compare

#: The rows of the seed's checkpoint table, in its order; the names of the MLflow metrics
#: ``eval/<scorer>/<metric>/<arm>``.
ARMS = ("SFT", "Base-DPO", "Combined", "TimeWarp-Implicit", "TimeWarp-Explicit")
#: The row every other arm is compared with: the model every DPO arm starts from.
BASELINE_ARM = "SFT"


@dataclass(frozen=True)
class VariantCell:
    arm: str
    scorer: str
    metric: str  # accuracy_normal | accuracy_shuffled | consistency
    estimate: Estimate
    difference: Estimate | None  # arm - baseline, paired; None for the baseline row


@dataclass
class VariantsReport:
    """Every arm scored on one benchmark version, each compared with the baseline arm."""

    benchmark_version: str
    baseline: str
    arms: list[str]
    cells: list[VariantCell]
    training_pairs: dict[str, dict[str, int]]  # arm -> pairs trained on, per source

    @property
    def columns(self) -> list[tuple[str, str]]:
        """(scorer, metric) in report order."""
        return list(dict.fromkeys((c.scorer, c.metric) for c in self.cells))

    def cell(self, arm: str, scorer: str, metric: str) -> VariantCell:
        return next(c for c in self.cells if (c.arm, c.scorer, c.metric) == (arm, scorer, metric))

    def table_lines(self) -> list[str]:
        """The table for a terminal: a row per arm, per column the accuracy [95% interval]
        and, below the baseline, the difference from it."""
        columns = self.columns
        rows = [[f"{'arm':<18} {'pairs':>6}", *(f"{scorer}/{metric}" for scorer, metric in columns)]]
        for arm in self.arms:
            pairs = sum(self.training_pairs.get(arm, {}).values())
            row = [f"{arm:<18} {pairs if arm != self.baseline else '-':>6}"]
            for scorer, metric in columns:
                cell = self.cell(arm, scorer, metric)
                text = format_interval(cell.estimate)
                if cell.difference is not None:
                    text += f" {format_interval(cell.difference, '+')}"
                row.append(text)
            rows.append(row)
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip() for row in rows]
        lines.append(f"benchmark {self.benchmark_version}; each cell: accuracy [95% CI], then the difference from "
                     f"{self.baseline} [95% paired CI]; intervals resample videos")
        return lines

    def metrics(self) -> dict[str, float]:
        """MLflow metrics: ``eval/<scorer>/<metric>/<arm>`` (the accuracy), its interval as
        ``eval_low/...`` and ``eval_high/...``, and the difference from the baseline as
        ``vs_<baseline>/...`` (with ``vs_<baseline>_low/``, ``vs_<baseline>_high/``)."""
        values: dict[str, float] = {}
        for c in self.cells:
            key = f"{c.scorer}/{c.metric}/{c.arm}"
            values.update({f"eval/{key}": c.estimate.value, f"eval_low/{key}": c.estimate.low,
                           f"eval_high/{key}": c.estimate.high})
            if c.difference is not None:
                prefix = f"vs_{self.baseline}"
                values.update({f"{prefix}/{key}": c.difference.value, f"{prefix}_low/{key}": c.difference.low,
                               f"{prefix}_high/{key}": c.difference.high})
        return {key: value for key, value in values.items() if not math.isnan(value)}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> VariantsReport:
        def estimate(raw: dict | None) -> Estimate | None:
            return Estimate(**raw) if raw is not None else None

        cells = [VariantCell(c["arm"], c["scorer"], c["metric"], estimate(c["estimate"]), estimate(c["difference"]))
                 for c in values["cells"]]
        return cls(values["benchmark_version"], values["baseline"], list(values["arms"]), cells,
                   {arm: dict(counts) for arm, counts in values["training_pairs"].items()})


def compare_variants(
    evaluations: dict[str, ModelEvaluation],
    training_pairs: dict[str, dict[str, int]],
    baseline: str = BASELINE_ARM,
    *,
    seed: int = 0,
) -> VariantsReport:
    """The table from each arm's evaluation (arm name -> evaluation, in row order); every arm
    must be scored on the baseline's benchmark version with the same scorers."""
    if baseline not in evaluations:
        raise ValueError(f"the baseline arm {baseline!r} has no evaluation; arms: {list(evaluations)}")
    base = evaluations[baseline]
    cells: list[VariantCell] = []
    for arm, evaluation in evaluations.items():
        if set(evaluation.results) != set(base.results):
            raise ValueError(f"arm {arm!r} was scored with {sorted(evaluation.results)}, the baseline with "
                             f"{sorted(base.results)}: score every arm with the same scorers")
        report = compare(base, evaluation, seed=seed)  # raises on another benchmark version
        for row in report.rows:
            own = arm == baseline
            cells.append(VariantCell(arm, row.scorer, row.metric, row.trained, None if own else row.difference))
    return VariantsReport(base.benchmark_version, baseline, list(evaluations), cells, training_pairs)


def format_interval(estimate: Estimate, sign: str = "") -> str:
    """``value [low, high]`` in percent (``sign="+"``: signed, for differences)."""
    return f"{estimate.value:{sign}.1%} [{estimate.low:{sign}.1%}, {estimate.high:{sign}.1%}]"

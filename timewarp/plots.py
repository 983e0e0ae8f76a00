"""Pictures people would rather look at than read: training curves and accuracy bars,
as PNG bytes for the ZenML dashboard and MLflow."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: pipelines run without a display
import matplotlib.pyplot as plt  # noqa: E402

TRAINING_CURVES = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def training_curves_png(history: Sequence[Mapping[str, float]], keys: Sequence[str] = TRAINING_CURVES) -> bytes:
    """One panel per logged metric, against the training step."""
    present = [k for k in keys if any(k in row for row in history)]
    if not present:
        present = ["loss"]
    figure, axes = plt.subplots(1, len(present), figsize=(3.2 * len(present), 2.6), squeeze=False)
    for axis, key in zip(axes[0], present):
        points = [(row.get("step", i), row[key]) for i, row in enumerate(history) if key in row]
        if points:
            steps, values = zip(*points)
            axis.plot(steps, values, marker="o", markersize=2, linewidth=1.2)
        axis.set_title(key, fontsize=9)
        axis.set_xlabel("step", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return _png(figure)


def comparison_png(report) -> bytes:
    return _png(comparison_figure(report))


def comparison_figure(report):
    """Grouped bars per scorer and metric: base vs trained accuracy with 95% intervals."""
    labels = [f"{r.scorer}\n{r.metric.replace('accuracy_', '')}" for r in report.rows]
    figure, axis = plt.subplots(figsize=(max(4.0, 1.2 * len(labels)), 3.0), layout="constrained")
    width = 0.38
    for offset, (name, pick) in enumerate(((report.base_kind, "base"), (report.trained_kind, "trained"))):
        estimates = [getattr(r, pick) for r in report.rows]
        xs = [i + (offset - 0.5) * width for i in range(len(labels))]
        values = [e.value for e in estimates]
        errors = [[e.value - e.low for e in estimates], [e.high - e.value for e in estimates]]
        axis.bar(xs, values, width, yerr=errors, capsize=3, label=name)
    _accuracy_axis(figure, axis, labels, fontsize=7)
    return figure


def variants_png(report) -> bytes:
    return _png(variants_figure(report))


def variants_figure(report):
    """Grouped bars per scorer and metric: every arm's accuracy with its 95% interval."""
    columns = report.columns
    labels = [f"{scorer}\n{metric.replace('accuracy_', '')}" for scorer, metric in columns]
    figure, axis = plt.subplots(figsize=(max(5.0, 2.2 * len(labels)), 3.2), layout="constrained")
    width = 0.8 / max(1, len(report.arms))
    for offset, arm in enumerate(report.arms):
        estimates = [report.cell(arm, scorer, metric).estimate for scorer, metric in columns]
        xs = [i + (offset - (len(report.arms) - 1) / 2) * width for i in range(len(labels))]
        errors = [[e.value - e.low for e in estimates], [e.high - e.value for e in estimates]]
        axis.bar(xs, [e.value for e in estimates], width, yerr=errors, capsize=2, label=arm)
    _accuracy_axis(figure, axis, labels, fontsize=6)
    return figure


def _accuracy_axis(figure, axis, labels: Sequence[str], fontsize: int) -> None:
    """Chance line, ticks and limits; the legend below the axes, where it covers no bar
    (an accuracy near 1 reaches the top of the axes, where a legend inside would sit)."""
    axis.axhline(0.25, color="grey", linestyle=":", linewidth=1, label="chance (4 options)")
    axis.set_xticks(range(len(labels)), labels, fontsize=7)
    axis.set_ylim(0, 1)
    axis.set_ylabel("accuracy")
    axis.grid(axis="y", alpha=0.3)
    handles, names = axis.get_legend_handles_labels()
    figure.legend(handles, names, loc="outside lower center", ncol=min(len(names), 3), fontsize=fontsize,
                  frameon=False)

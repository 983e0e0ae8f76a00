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

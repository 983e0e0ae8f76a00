"""The evaluation plots' legends sit outside the axes: no bar (nor its interval) is hidden
under the legend, even at accuracies near 1, measured on the rendered figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
from matplotlib.container import BarContainer

from timewarp.evaluation.report import ItemResult
from timewarp.evaluation.results import ModelEvaluation, compare
from timewarp.evaluation.variants import ARMS, compare_variants
from timewarp.plots import comparison_figure, comparison_png, variants_figure

VIDEOS = 20


def _evaluation(right: int, kind: str) -> ModelEvaluation:
    items = [ItemResult(f"v{v}-{variant}", "end", variant, v < right, 0, 0, f"v{v}")
             for v in range(VIDEOS) for variant in ("normal", "shuffled")]
    return ModelEvaluation(kind, f"/models/{kind}", "bench-a", {"text_loglik": items, "loglik": items})


def _assert_legend_covers_no_bar(figure) -> None:
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)  # the layout engine places the legend
    [legend] = figure.legends
    legend_box = legend.get_window_extent(renderer)
    [axis] = figure.axes
    assert not axis.legend_  # nothing inside the axes
    bars = [bar for container in axis.containers if isinstance(container, BarContainer) for bar in container]
    assert bars and legend.get_texts()
    for artist in bars:
        assert not legend_box.overlaps(artist.get_window_extent(renderer)), artist
    # Nor anything else drawn in the axes (the intervals, the chance line).
    assert not legend_box.overlaps(axis.get_window_extent(renderer))
    plt.close(figure)


@pytest.mark.parametrize("right", [VIDEOS, VIDEOS // 2])
def test_comparison_legend_is_below_the_bars(right):
    report = compare(_evaluation(VIDEOS // 4, "base"), _evaluation(right, "trained"))
    _assert_legend_covers_no_bar(comparison_figure(report))
    assert comparison_png(report).startswith(b"\x89PNG")


def test_variants_legend_is_below_the_bars():
    evaluations = {arm: _evaluation(VIDEOS - i, arm) for i, arm in enumerate(ARMS)}
    report = compare_variants(evaluations, {arm: {"timewarp-explicit": 8} for arm in ARMS[1:]})
    _assert_legend_covers_no_bar(variants_figure(report))

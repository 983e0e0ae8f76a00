"""What a run logs to MLflow: recipe and data versions as params, training curves, every
evaluation number with its interval, and the plots; for ``timewarp_variants``, the table;
for ``timewarp_evaluate``, the public benchmarks' scores and predictions."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow

from timewarp.evaluation.results import ComparisonReport
from timewarp.models.checkpoint import ModelCheckpoint
from timewarp.evaluation.lmms.results import BenchmarkResults
from timewarp.evaluation.variants import VariantsReport
from timewarp.plots import comparison_png, training_curves_png, variants_png
from timewarp.tracking.promotion import GatePolicy, PromotionDecision


def flatten(prefix: str, values: dict) -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(f"{prefix}{key}.", value))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def report_metrics(report: ComparisonReport, prefix: str = "") -> dict[str, float]:
    """``eval/<scorer>/<metric>/<kind>[_low|_high]`` for both models and
    ``eval/<scorer>/<metric>/<prefix>difference[_low|_high]``."""
    metrics: dict[str, float] = {}
    for r in report.rows:
        for kind, estimate in ((report.base_kind, r.base), (report.trained_kind, r.trained)):
            for suffix, value in (("", estimate.value), ("_low", estimate.low), ("_high", estimate.high)):
                metrics[f"eval/{r.scorer}/{r.metric}/{kind}{suffix}"] = value
        for suffix, value in (("", r.difference.value), ("_low", r.difference.low), ("_high", r.difference.high)):
            metrics[f"eval/{r.scorer}/{r.metric}/{prefix}difference{suffix}"] = value
    return metrics


def log_training_run(
    model: ModelCheckpoint,
    reports: dict[str, ComparisonReport | None],
    decision: PromotionDecision,
    policy: GatePolicy,
    benchmark_version: str,
) -> None:
    """Log to the active MLflow run: the recipe, the gate's settings, the data versions,
    the training curves, every report's metrics (``evaluation`` unprefixed, the others by
    name: ``control_``, ``vs_champion_``) and plot (``plots/<name>.png``), and whether the
    gate promoted the model (``gate/promoted``)."""
    mlflow.log_params(flatten("recipe.", model.recipe))
    mlflow.log_params({
        "base_model": model.base_model or "", "family": model.family, "kind": model.kind,
        "adapter": str(model.adapter), "gate_scorer": policy.scorer, "gate_metrics": ",".join(policy.metrics),
        "gate_margin": str(policy.margin), "benchmark_version": benchmark_version,
        **{f"data.{name}": version for name, version in model.data_versions.items()},
    })
    for row in model.history:
        step_number = int(row.get("step", 0))
        for key, value in row.items():
            if key not in ("step", "epoch") and isinstance(value, (int, float)):
                mlflow.log_metric(f"train/{key}", float(value), step=step_number)
    present = {name: report for name, report in {**reports, "vs_champion": decision.comparison}.items() if report}
    metrics = {"gate/promoted": float(decision.promote)}
    for name, report in present.items():
        metrics.update(report_metrics(report, "" if name == "evaluation" else f"{name.removeprefix('evaluation_')}_"))
    mlflow.log_metrics(metrics)
    images = {"training_curves.png": training_curves_png(model.history)}
    images.update({f"{name}.png": comparison_png(report) for name, report in present.items()})
    with tempfile.TemporaryDirectory() as folder:
        for name, image in images.items():
            (Path(folder) / name).write_bytes(image)
            mlflow.log_artifact(str(Path(folder) / name), artifact_path="plots")


def closing_lines(
    reports: list[ComparisonReport | None], decision: PromotionDecision, policy: GatePolicy, champion_uri: str | None
) -> list[str]:
    """Every model's accuracies with their intervals, then the gate's comparison with the
    re-scored champion (its scorer's rows)."""
    lines = [line for report in reports if report is not None for line in report.lines()]
    if decision.comparison is not None:
        lines.append(f"re-scored the champion {champion_uri} on benchmark {decision.comparison.benchmark_version} "
                     f"with {policy.scorer}:")
        lines += [line for line in decision.comparison.lines() if line.lstrip().startswith(policy.scorer)]
    return lines


def log_variants_run(report: VariantsReport, dpo_recipe: dict) -> None:
    """Log to the active MLflow run: the shared DPO recipe, the arms and what each trained
    on, every cell of the table (:meth:`VariantsReport.metrics`), the table as text and
    the plot (``plots/variants.png``)."""
    mlflow.log_params(flatten("recipe.", dpo_recipe))
    mlflow.log_params({"arms": ",".join(report.arms), "baseline": report.baseline,
                       "benchmark_version": report.benchmark_version,
                       **flatten("pairs.", report.training_pairs)})
    mlflow.log_metrics(report.metrics())
    mlflow.log_text("\n".join(report.table_lines()) + "\n", "variants_table.txt")
    mlflow.log_dict(report.to_dict(), "variants_report.json")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "variants.png"
        path.write_bytes(variants_png(report))
        mlflow.log_artifact(str(path), artifact_path="plots")


def log_benchmark_run(results: BenchmarkResults, model: str) -> None:
    """Log to the active MLflow run: the model, the tasks and lmms-eval's version, every
    metric as ``bench/<task>/<metric>``, the per-item predictions of each task
    (``predictions/<task>.jsonl``) and the table."""
    mlflow.log_params({"model": model, "benchmarks": ",".join(sorted(results.metrics)),
                       "lmms_eval_version": results.lmms_eval_version,
                       **{f"items.{task}": count for task, count in results.item_counts.items()}})
    mlflow.log_metrics(results.flat_metrics())
    for task, lines in results.predictions_jsonl().items():
        mlflow.log_text(lines, f"predictions/{task}.jsonl")
    mlflow.log_text("\n".join(results.table_lines()) + "\n", "benchmarks_table.txt")

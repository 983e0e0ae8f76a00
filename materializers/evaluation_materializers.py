"""Materializers for evaluation results: per-item predictions (parquet), the base vs
trained comparison and the variants table (JSON), each comparison with a table and a plot in
the dashboard."""

from __future__ import annotations

import base64
import json
import os
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

from materializers._html import page, table
from materializers._records import load_header, load_records, save_records, write_html
from timewarp.evaluation.report import Estimate, ItemResult
from timewarp.evaluation.results import ComparisonReport, ComparisonRow, ModelEvaluation
from timewarp.evaluation.lmms.results import BenchmarkResults
from timewarp.evaluation.variants import VariantsReport, format_interval
from timewarp.plots import comparison_png, variants_png


class ModelEvaluationMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (ModelEvaluation,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA_ANALYSIS

    def save(self, data: ModelEvaluation) -> None:
        for scorer, items in data.results.items():
            save_records(self.uri, f"predictions_{scorer}", items)
        header = {"model_kind": data.model_kind, "model_path": data.model_path,
                  "benchmark_version": data.benchmark_version, "scorers": sorted(data.results)}
        with fileio.open(os.path.join(self.uri, "header.json"), "w") as handle:
            handle.write(json.dumps(header))

    def load(self, data_type: type[Any]) -> ModelEvaluation:
        header = load_header(self.uri)
        results = {s: load_records(self.uri, f"predictions_{s}", ItemResult) for s in header["scorers"]}
        return ModelEvaluation(header["model_kind"], header["model_path"], header["benchmark_version"], results)

    def extract_metadata(self, data: ModelEvaluation) -> dict[str, Any]:
        metadata: dict[str, Any] = {"model_kind": data.model_kind, "benchmark_version": data.benchmark_version}
        for scorer in data.results:
            metrics = data.metrics(scorer)
            metadata.update({f"{scorer}/{k}": v for k, v in metrics.items() if "/" not in k})
        return metadata

    def save_visualizations(self, data: ModelEvaluation) -> dict[str, VisualizationType]:
        rows = [(s, k, f"{v:.1%}") for s in data.results for k, v in data.metrics(s).items()]
        body = table(["scorer", "metric", "value"], rows)
        return {write_html(self.uri, "evaluation.html", page(f"Evaluation of the {data.model_kind} model", body)):
                VisualizationType.HTML}


def _estimate(values: dict) -> Estimate:
    return Estimate(**values)


class ComparisonReportMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (ComparisonReport,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA_ANALYSIS

    def save(self, data: ComparisonReport) -> None:
        with fileio.open(os.path.join(self.uri, "report.json"), "w") as handle:
            handle.write(json.dumps(data.to_dict(), indent=1))

    def load(self, data_type: type[Any]) -> ComparisonReport:
        with fileio.open(os.path.join(self.uri, "report.json"), "r") as handle:
            raw = json.loads(handle.read())
        rows = [
            ComparisonRow(r["scorer"], r["metric"], _estimate(r["base"]), _estimate(r["trained"]), _estimate(r["difference"]))
            for r in raw["rows"]
        ]
        return ComparisonReport(raw["benchmark_version"], raw["base_kind"], raw["trained_kind"], rows)

    def extract_metadata(self, data: ComparisonReport) -> dict[str, Any]:
        metadata: dict[str, Any] = {"benchmark_version": data.benchmark_version}
        for r in data.rows:
            metadata[f"{r.scorer}/{r.metric}/{data.base_kind}"] = r.base.value
            metadata[f"{r.scorer}/{r.metric}/{data.trained_kind}"] = r.trained.value
            metadata[f"{r.scorer}/{r.metric}/difference"] = r.difference.value
        return metadata

    def save_visualizations(self, data: ComparisonReport) -> dict[str, VisualizationType]:
        image = base64.b64encode(comparison_png(data)).decode()
        body = f"<img src='data:image/png;base64,{image}' style='max-width:100%'>" + table(
            ["scorer", "metric", data.base_kind, data.trained_kind, "difference [95% CI]", "items"],
            [(r.scorer, r.metric, f"{r.base.value:.1%}", f"{r.trained.value:.1%}",
              f"{r.difference.value:+.1%} [{r.difference.low:+.1%}, {r.difference.high:+.1%}]", r.base.n)
             for r in data.rows],
        )
        return {write_html(self.uri, "comparison.html", page("Base vs trained on the TimeWarp benchmarks", body)):
                VisualizationType.HTML}


class VariantsReportMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (VariantsReport,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA_ANALYSIS

    def save(self, data: VariantsReport) -> None:
        with fileio.open(os.path.join(self.uri, "report.json"), "w") as handle:
            handle.write(json.dumps(data.to_dict(), indent=1))

    def load(self, data_type: type[Any]) -> VariantsReport:
        with fileio.open(os.path.join(self.uri, "report.json"), "r") as handle:
            return VariantsReport.from_dict(json.loads(handle.read()))

    def extract_metadata(self, data: VariantsReport) -> dict[str, Any]:
        return {"benchmark_version": data.benchmark_version, "arms": data.arms,
                **{f"{c.scorer}/{c.metric}/{c.arm}": c.estimate.value for c in data.cells}}

    def save_visualizations(self, data: VariantsReport) -> dict[str, VisualizationType]:
        image = base64.b64encode(variants_png(data)).decode()
        columns = data.columns
        rows = []
        for arm in data.arms:
            cells = [data.cell(arm, scorer, metric) for scorer, metric in columns]
            rows.append((arm, sum(data.training_pairs.get(arm, {}).values()) if arm != data.baseline else "-", *(
                format_interval(c.estimate) + ("" if c.difference is None else f"; {format_interval(c.difference, '+')}")
                for c in cells)))
        body = (f"<p>Benchmark {data.benchmark_version}. Each cell: accuracy [95% CI] and, for every arm "
                f"but {data.baseline}, its difference from {data.baseline} [95% paired CI]. Intervals resample "
                f"videos.</p>" + table(["arm", "pairs", *(f"{s} {m}" for s, m in columns)], rows)
                + f"<img src='data:image/png;base64,{image}' style='max-width:100%'>")
        return {write_html(self.uri, "variants.html", page("The paper's methods on the TimeWarp benchmarks", body)):
                VisualizationType.HTML}


class BenchmarkResultsMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (BenchmarkResults,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA_ANALYSIS

    def save(self, data: BenchmarkResults) -> None:
        with fileio.open(os.path.join(self.uri, "results.json"), "w") as handle:
            handle.write(json.dumps(data.to_dict()))

    def load(self, data_type: type[Any]) -> BenchmarkResults:
        with fileio.open(os.path.join(self.uri, "results.json"), "r") as handle:
            return BenchmarkResults.from_dict(json.loads(handle.read()))

    def extract_metadata(self, data: BenchmarkResults) -> dict[str, Any]:
        return {"lmms_eval_version": data.lmms_eval_version, "items": data.item_counts, **data.flat_metrics()}

    def save_visualizations(self, data: BenchmarkResults) -> dict[str, VisualizationType]:
        scores = table(["task", "metric", "value", "items"],
                       [(task, metric, f"{value:.2f}", data.item_counts.get(task, ""))
                        for task, values in sorted(data.metrics.items()) for metric, value in sorted(values.items())])
        items = table(["task", "doc", "target", "prediction", "scores"],
                      [(p.task, p.doc_id, p.target, p.prediction, p.scores) for p in data.predictions[:200]])
        body = (f"<p>Scored with lmms-eval {data.lmms_eval_version}'s own task definitions.</p>{scores}"
                f"<h3>Predictions (first {min(200, len(data.predictions))} of {len(data.predictions)})</h3>{items}")
        return {write_html(self.uri, "benchmarks.html", page("Public benchmarks", body)): VisualizationType.HTML}

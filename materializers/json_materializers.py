"""Materializers for small domain records stored as JSON: the video split and the
data-quality report."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

from materializers._html import page, table
from materializers._records import write_html
from timewarp.generation.quality import QualityReport
from timewarp.generation.splits import VideoSplit


def _write_json(uri: str, name: str, value: Any) -> None:
    with fileio.open(os.path.join(uri, name), "w") as handle:
        handle.write(json.dumps(value, indent=1))


def _read_json(uri: str, name: str) -> Any:
    with fileio.open(os.path.join(uri, name), "r") as handle:
        return json.loads(handle.read())


class VideoSplitMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (VideoSplit,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save(self, data: VideoSplit) -> None:
        _write_json(self.uri, "split.json", asdict(data))

    def load(self, data_type: type[Any]) -> VideoSplit:
        return VideoSplit(**_read_json(self.uri, "split.json"))

    def extract_metadata(self, data: VideoSplit) -> dict[str, Any]:
        return {"train_videos": len(data.train_ids), "benchmark_videos": len(data.benchmark_ids),
                "paper_overlap": data.paper_overlap, "leaked_videos": len(data.leaked_ids())}


class QualityReportMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (QualityReport,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA_ANALYSIS

    def save(self, data: QualityReport) -> None:
        _write_json(self.uri, "report.json", asdict(data))

    def load(self, data_type: type[Any]) -> QualityReport:
        return QualityReport(**_read_json(self.uri, "report.json"))

    def extract_metadata(self, data: QualityReport) -> dict[str, Any]:
        return data.as_metadata()

    def save_visualizations(self, data: QualityReport) -> dict[str, VisualizationType]:
        body = table(["count", "value"], data.counts.items())
        body += "<h3>Question types</h3>" + table(
            ["set", *sorted({t for v in data.question_types.values() for t in v})],
            [(name, *[types.get(t, 0) for t in sorted({t for v in data.question_types.values() for t in v})])
             for name, types in data.question_types.items()],
        )
        body += "<h3>Correct option position</h3>" + table(
            ["variant", "A", "B", "C", "D"], [(k, *[v.get(x, 0) for x in "ABCD"]) for k, v in data.answer_positions.items()]
        )
        body += "<h3>Text lengths (words)</h3>" + table(
            ["field", "min", "mean", "max"],
            [(k, v["min_words"], v["mean_words"], v["max_words"]) for k, v in data.text_lengths.items()],
        )
        body += "<h3>Checks</h3>" + table(
            ["check", "value"],
            [("chosen == rejected", data.chosen_equals_rejected), ("duplicate questions", data.duplicate_questions),
             ("benchmark answers changed by shuffling", data.benchmark_answer_changes),
             ("generation rejections", data.generation_rejections)],
        )
        for title, lines in (("Violations", data.violations), ("Warnings", data.warnings)):
            if lines:
                body += f"<h3>{title}</h3>" + table([title.lower()], [(line,) for line in lines])
        return {write_html(self.uri, "quality.html", page("Data quality", body)): VisualizationType.HTML}

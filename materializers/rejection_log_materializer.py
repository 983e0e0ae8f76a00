"""Materializer for :class:`RejectionLog`: a parquet table, counts per stage as metadata
and a table of reasons as a view."""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

from materializers._html import page, table
from timewarp.data.corpus import REJECTIONS, RejectionLog

LISTED = 200


class RejectionLogMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (RejectionLog,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save(self, data: RejectionLog) -> None:
        with tempfile.TemporaryDirectory() as local:
            data.write(os.path.join(local, REJECTIONS))
            fileio.copy(os.path.join(local, REJECTIONS), os.path.join(self.uri, REJECTIONS), overwrite=True)

    def load(self, data_type: type[Any]) -> RejectionLog:
        with tempfile.TemporaryDirectory() as local:
            fileio.copy(os.path.join(self.uri, REJECTIONS), os.path.join(local, REJECTIONS))
            return RejectionLog.read(os.path.join(local, REJECTIONS))

    def extract_metadata(self, data: RejectionLog) -> dict[str, Any]:
        return {"rejected": len(data), "rejected_by_stage": data.by_stage()}

    def save_visualizations(self, data: RejectionLog) -> dict[str, VisualizationType]:
        # Reasons differ in numbers; count them by their first clause.
        kinds = Counter((r.stage, r.reason.split(":")[0][:80]) for r in data.rejections)
        body = f"<p>{len(data)} row(s) rejected.</p>"
        body += table(["stage", "reason", "rows"], [(s, k, n) for (s, k), n in kinds.most_common()])
        body += "<h3>Rows</h3>" + table(
            ["video id", "shard", "row", "stage", "reason"],
            [(r.video_id or "", r.shard, r.row, r.stage, r.reason) for r in data.rejections[:LISTED]],
        )
        path = os.path.join(self.uri, "rejections.html")
        with fileio.open(path, "w") as handle:
            handle.write(page("Rejected rows", body))
        return {path: VisualizationType.HTML}

"""Materializer for :class:`ShardSet`: the shard listing, plus the shards themselves when
they were generated inside the run, so any pod can read them from the artifact store."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

from materializers._html import page, table
from materializers._storage import upload_folder
from timewarp.data.ingest import ShardSet

LISTING = "shards.json"
STORED_FLAG = "stored_in_artifact"


class ShardSetMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (ShardSet,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save(self, data: ShardSet) -> None:
        if data.generated:
            upload_folder(os.path.join(data.root, "data"), os.path.join(self.uri, "data"))
            fileio.open(os.path.join(self.uri, STORED_FLAG), "w").close()
        with fileio.open(os.path.join(self.uri, LISTING), "w") as handle:
            handle.write(data.to_json())

    def load(self, data_type: type[Any]) -> ShardSet:
        with fileio.open(os.path.join(self.uri, LISTING), "r") as handle:
            listing = ShardSet.from_json(handle.read())
        if fileio.exists(os.path.join(self.uri, STORED_FLAG)):
            return listing.relocated(self.uri)
        return listing

    def extract_metadata(self, data: ShardSet) -> dict[str, Any]:
        return {"source": data.root, "shards": len(data.shards), "rows": data.rows}

    def compute_content_hash(self, data: ShardSet) -> str:
        return data.content_hash()

    def save_visualizations(self, data: ShardSet) -> dict[str, VisualizationType]:
        body = f"<p>{data.rows} rows in {len(data.shards)} shard(s) from <code>{data.root}</code></p>"
        body += table(["shard", "rows", "fingerprint"], [(s.uri, s.rows, s.fingerprint) for s in data.shards])
        path = os.path.join(self.uri, "shards.html")
        with fileio.open(path, "w") as handle:
            handle.write(page("FineVideo shards", body))
        return {path: VisualizationType.HTML}

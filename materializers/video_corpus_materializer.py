"""Materializer for :class:`VideoCorpus`: manifest parquet plus the media it references,
with corpus counts as metadata and frame strips (true vs shuffled order) as a view.

From a remote artifact store only the manifest is downloaded on load; each media file
follows on first use, so a training or evaluation step fetches the frames it reads and
never the original videos it does not."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer
from zenml.utils import io_utils

from materializers._html import frame_strip, page, table
from materializers._previews import frame_thumbnails
from materializers._storage import ArtifactFileFetch, is_local, upload_folder
from timewarp.data.corpus import VideoCorpus
from timewarp.data.prepare import link_or_copy
from timewarp.data.remote_media import RemoteMedia

PREVIEW_VIDEOS = 4


class VideoCorpusMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (VideoCorpus,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save(self, data: VideoCorpus) -> None:
        data.fetch_all()  # a corpus loaded lazily holds only what was used so far
        data.write_manifest()
        if io_utils.is_remote(self.uri):
            upload_folder(data.root, self.uri)
            return
        for source in sorted(Path(data.root).rglob("*")):  # a local store: linked, not copied
            if source.is_file():
                target = Path(self.uri) / source.relative_to(data.root)
                target.parent.mkdir(parents=True, exist_ok=True)
                link_or_copy(source, target)

    def load(self, data_type: type[Any]) -> VideoCorpus:
        if is_local(self.uri):
            return VideoCorpus.read(self.uri)  # read in place: consumers never write to it
        with self.get_temporary_directory(delete_at_exit=False) as cache:
            remote = RemoteMedia(self.uri, ArtifactFileFetch(self.uri, self.artifact_store))
            return VideoCorpus.read(cache, remote=remote)

    def extract_metadata(self, data: VideoCorpus) -> dict[str, Any]:
        return {"rows_read": data.rows_read, "rejected": data.rows_read - len(data), **data.summary(),
                "schema_warnings": data.schema_warning_counts()}

    def save_visualizations(self, data: VideoCorpus) -> dict[str, VisualizationType]:
        summary = data.summary()
        body = table(["rows read", *summary], [(data.rows_read, *summary.values())])
        warnings = data.schema_warning_counts()
        if warnings:  # mismatches in fields the method does not read: the videos were kept
            body += "<h3>Schema warnings</h3>" + table(["field: reason", "videos"], list(warnings.items()))
        for video in data.videos[:PREVIEW_VIDEOS]:
            thumbnails = frame_thumbnails(data, video)
            labels = [f"s{video.frame_scene[i] + 1}" for i in range(len(thumbnails))]
            tips = [video.scenes[video.frame_scene[i]].caption for i in range(len(thumbnails))]
            order = video.shuffled_frame_order
            body += (
                f"<h3>{video.video_id}</h3><div class='muted'>{video.shard} row {video.row} &middot; "
                f"scene order shown shuffled: {[p + 1 for p in video.permutation]}</div>"
                f"<div>true order</div>{frame_strip(thumbnails, labels, tips)}"
                f"<div>shuffled order</div>{frame_strip([thumbnails[i] for i in order], [labels[i] for i in order], [tips[i] for i in order])}"
            )
        path = os.path.join(self.uri, "preview.html")
        with fileio.open(path, "w") as handle:
            handle.write(page("Prepared videos: true and shuffled scene order", body))
        return {path: VisualizationType.HTML}

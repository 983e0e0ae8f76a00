"""Materializer for :class:`VideoCorpus`: manifest parquet plus the media it references,
with corpus counts as metadata and frame strips (true vs shuffled order) as a view.

From a remote artifact store only the manifest is downloaded on load; each media file
follows on first use, so a training or evaluation step fetches the frames it reads and
never the original videos it does not."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

from materializers._html import frame_strip, page, table
from materializers._storage import ArtifactFileFetch, is_local, upload_folder
from timewarp.data.corpus import VideoCorpus
from timewarp.data.remote_media import RemoteMedia

PREVIEW_VIDEOS = 4


class VideoCorpusMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (VideoCorpus,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save(self, data: VideoCorpus) -> None:
        data.fetch_all()  # a corpus loaded lazily holds only what was used so far
        data.write_manifest()
        upload_folder(data.root, self.uri)

    def load(self, data_type: type[Any]) -> VideoCorpus:
        if is_local(self.uri):
            return VideoCorpus.read(self.uri)  # read in place: consumers never write to it
        with self.get_temporary_directory(delete_at_exit=False) as cache:
            remote = RemoteMedia(self.uri, ArtifactFileFetch(self.uri, self.artifact_store))
            return VideoCorpus.read(cache, remote=remote)

    def extract_metadata(self, data: VideoCorpus) -> dict[str, Any]:
        return {"rows_read": data.rows_read, "rejected": data.rows_read - len(data), **data.summary()}

    def save_visualizations(self, data: VideoCorpus) -> dict[str, VisualizationType]:
        summary = data.summary()
        body = table(["rows read", *summary], [(data.rows_read, *summary.values())])
        for video in data.videos[:PREVIEW_VIDEOS]:
            frames = data.frames(video)
            labels = [f"s{video.frame_scene[i] + 1}" for i in range(len(frames))]
            tips = [video.scenes[video.frame_scene[i]].caption for i in range(len(frames))]
            order = video.shuffled_frame_order
            body += (
                f"<h3>{video.video_id}</h3><div class='muted'>{video.shard} row {video.row} &middot; "
                f"scene order shown shuffled: {[p + 1 for p in video.permutation]}</div>"
                f"<div>true order</div>{frame_strip(frames, labels, tips)}"
                f"<div>shuffled order</div>{frame_strip(frames[order], [labels[i] for i in order], [tips[i] for i in order])}"
            )
        path = os.path.join(self.uri, "preview.html")
        with fileio.open(path, "w") as handle:
            handle.write(page("Prepared videos: true and shuffled scene order", body))
        return {path: VisualizationType.HTML}

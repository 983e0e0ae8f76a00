"""Frame strips of a dataset's videos for the dashboard, read from its media root."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from PIL import Image

from materializers._html import frame_strip, image_data_uri
from materializers._storage import is_local
from timewarp.data.corpus import PreparedVideo, VideoCorpus


@functools.lru_cache(maxsize=1024)
def _thumbnail(path: str, mtime_ns: int, size: int) -> str:
    # Keyed by the file's identity too: the SFT and preference previews of one run show the
    # same videos' frames, which are then decoded and encoded once.
    with Image.open(path) as image:
        return image_data_uri(image)


def frame_thumbnails(corpus: VideoCorpus, video: PreparedVideo) -> list[str]:
    """Data-URI thumbnails of a video's sampled frames, in true order."""
    uris = []
    for index in range(len(video.frame_times)):
        path = corpus.path(video.frame_file(index))
        stat = os.stat(path)
        uris.append(_thumbnail(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size))
    return uris


class FramePreview:
    """Frame strips by video id; empty when the media root is not on this machine."""

    def __init__(self, media_root: str):
        self.corpus = None
        if media_root and is_local(media_root) and os.path.exists(os.path.join(media_root, "manifest.parquet")):
            self.corpus = VideoCorpus.read(media_root)
            self.videos = {v.video_id: v for v in self.corpus.videos}

    def strip(self, video_id: str, shuffled: bool = False) -> str:
        if self.corpus is None or video_id not in self.videos:
            return ""
        video = self.videos[video_id]
        thumbnails = frame_thumbnails(self.corpus, video)
        order = video.shuffled_frame_order if shuffled else range(len(video.frame_scene))
        labels = [f"s{video.frame_scene[i] + 1}" for i in order]
        return frame_strip([thumbnails[i] for i in order], labels, labels)

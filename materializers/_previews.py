"""Frame strips of a dataset's videos for the dashboard, read from its media root."""

from __future__ import annotations

import os

from materializers._html import frame_strip
from materializers._storage import is_local
from timewarp.data.corpus import VideoCorpus


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
        frames = self.corpus.shuffled_frames(video) if shuffled else self.corpus.frames(video)
        order = video.shuffled_frame_order if shuffled else range(len(video.frame_scene))
        labels = [f"s{video.frame_scene[i] + 1}" for i in order]
        return frame_strip(frames, labels, labels)

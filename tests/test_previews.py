"""Dashboard previews of the corpus and the datasets: frame thumbnails read once per frame
(the four text datasets of a run show the same videos), and a corpus kept in a local
artifact store by links, not copies."""

from __future__ import annotations

import os
import re
from pathlib import Path

from materializers._previews import FramePreview, _thumbnail
from materializers.video_corpus_materializer import (
    PREVIEW_VIDEOS,
    VideoCorpusMaterializer,
)
from timewarp.data.corpus import VideoCorpus
from timewarp.data.ingest import list_shards
from timewarp.data.prepare import PrepareConfig, prepare_corpus


def test_corpus_preview_and_dataset_strips_decode_each_frame_once(sample_root, tmp_path):
    corpus, _ = prepare_corpus(list_shards(str(sample_root)), tmp_path / "part", PrepareConfig(), max_videos=5)
    materializer = VideoCorpusMaterializer(str(tmp_path / "artifact"))
    materializer.save(corpus)
    stored = VideoCorpus.read(tmp_path / "artifact")
    assert [v.video_id for v in stored.videos] == [v.video_id for v in corpus.videos]
    video = stored.videos[0]
    assert all(os.path.samefile(stored.path(f), corpus.path(f)) for f in video.media_files)

    html_file = next(iter(materializer.save_visualizations(stored)))
    images = re.findall(r"<img src='data:image/jpeg;base64,", Path(html_file).read_text())
    assert len(images) == 2 * PREVIEW_VIDEOS * len(video.frame_times)  # true and shuffled order

    _thumbnail.cache_clear()
    normal = FramePreview(str(tmp_path / "artifact")).strip(video.video_id)
    shuffled = FramePreview(str(tmp_path / "artifact")).strip(video.video_id, shuffled=True)
    assert _thumbnail.cache_info().misses == len(video.frame_times), "a frame was decoded twice"
    assert normal.count("<img") == shuffled.count("<img") == len(video.frame_times)
    labels = re.findall(r"</?img[^>]*>(s\d+)</figure>", shuffled)
    assert labels == [f"s{video.frame_scene[i] + 1}" for i in video.shuffled_frame_order]
    assert FramePreview(str(tmp_path / "nowhere")).strip(video.video_id) == ""

"""The textured sample videos (``SampleSpec.realistic`` uses them): camera-like pixels
(grain, drifting gradient, motion) whose scene colour still reads back from every frame."""

from __future__ import annotations

import dataclasses

import numpy as np
from helpers import background_colour

from timewarp.data.finevideo import parse_timestamp
from timewarp.data.sample import SampleSpec, make_video
from timewarp.data.video import read_frames


def test_textured_frames_have_grain_and_motion_and_keep_their_scene_colour(tmp_path):
    spec = dataclasses.replace(SampleSpec(), textured=True, encoder_preset="veryfast")
    mp4, annotation = make_video("tex00001", 3, spec)
    path = tmp_path / "video.mp4"
    path.write_bytes(mp4)
    scenes = annotation["content_metadata"]["scenes"]
    middles = [(parse_timestamp(s["timestamps"]["start_timestamp"]) + parse_timestamp(s["timestamps"]["end_timestamp"])) / 2
               for s in scenes]
    frames = read_frames(path, middles)
    for frame, scene in zip(frames, scenes):
        assert background_colour(frame) in scene["title"], "the scene's colour no longer reads back"
        corner = frame[: spec.height // 4, : spec.width // 4].astype(float)
        assert corner.std(axis=(0, 1)).max() > 2.0, "a flat background: no grain or gradient"
    first, later = read_frames(path, [middles[0] - 0.25, middles[0]]).astype(int)
    assert np.abs(first - later).mean() > 1.0, "consecutive frames of a scene do not change"


def test_realistic_preset_is_textured_and_finevideo_sized():
    spec = SampleSpec.realistic()
    assert spec.textured and spec.encoder_preset != "ultrafast"
    assert (spec.width, spec.height, spec.fps) == (640, 360, 30)
    assert 60 <= spec.min_scenes * spec.min_scene_seconds and spec.max_scenes * spec.max_scene_seconds <= 105

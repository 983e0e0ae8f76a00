"""Building FineVideo rows and shards for tests, good and deliberately broken."""

from __future__ import annotations

import copy
from pathlib import Path

from timewarp.data.sample import SampleSpec, make_video, write_shard


def good_row(video_id: str, seed: int = 0) -> tuple[bytes, dict]:
    return make_video(video_id, seed, SampleSpec())


def with_id(row: tuple[bytes, dict], video_id: str) -> tuple[bytes, dict]:
    mp4, annotation = row
    annotation = copy.deepcopy(annotation)
    annotation["original_video_filename"] = f"{video_id}.mp4"
    annotation["original_json_filename"] = f"{video_id}.json"
    return mp4, annotation


def write_rows(root: Path, shards: list[list[tuple[bytes | None, dict | None]]], row_group_size: int = 2) -> Path:
    """Write ``root/data/train-XXXXX.parquet`` shards holding exactly the given rows."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    for index, rows in enumerate(shards):
        write_shard(rows, data / f"train-{index:05d}-of-{len(shards):05d}.parquet", row_group_size)
    return root


def annotation_with_activities(scenes: list[list[tuple[str, str, str]]], video_id: str = "v1") -> dict:
    """A valid annotation whose scenes hold the given (start, end, description) activities."""
    _, annotation = good_row(video_id)
    annotation = copy.deepcopy(annotation)
    template = annotation["content_metadata"]["scenes"][0]
    rows = []
    for number, activities in enumerate(scenes, start=1):
        scene = copy.deepcopy(template)
        scene["sceneId"] = number
        scene["activities"] = [
            {"description": text, "timestamp": {"start_timestamp": start, "end_timestamp": end}}
            for start, end, text in activities
        ]
        rows.append(scene)
    annotation["content_metadata"]["scenes"] = rows
    return annotation


def background_colour(frame) -> str:
    """The palette colour nearest to a frame's corner (the shape never reaches corners)."""
    import numpy as np

    from timewarp.data.sample import PALETTE

    pixel = np.asarray(frame[1, 1], dtype=float)
    return min(PALETTE, key=lambda name: float(np.sum((np.asarray(PALETTE[name]) - pixel) ** 2)))


def caption_colour(caption: str) -> str:
    """The background colour a generated caption names."""
    from timewarp.data.sample import PALETTE

    return next(
        name for name in PALETTE if f" {name} background" in caption or caption.startswith(f"{name.capitalize()} scene.")
    )

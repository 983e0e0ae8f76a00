"""Writing a corpus in the paper's file layout, so the authors' tooling can read it.

``export_dir`` may be a local folder or any fsspec URI (``s3://bucket/prefix``).
Layout: ``normal_annotations/<id>.json``, ``shuffled_annotations/<id>.json``,
``normal_videos/<id>.mp4``, ``shuffled_videos/<id>.mp4`` (when rendered),
``frames/<id>/normal/NN.png`` and ``frames/<id>/shuffled/NN.png``, ``rejections.jsonl``
and ``lineage.json`` (where the export came from).
"""

from __future__ import annotations

import json
from typing import Any

import fsspec

from timewarp.data.corpus import PreparedVideo, RejectionLog, VideoCorpus


def _scene_fields(video: PreparedVideo, shuffled: bool) -> dict[str, Any]:
    scenes = video.shuffled_scenes if shuffled else video.scenes
    return {
        "video": f"{video.video_id}.mp4",
        "annotation_filename": video.annotation_filename,
        "description": [scene.caption for scene in scenes],
        "scene_timestamps": [[scene.start, scene.end] for scene in scenes],
        "combined_captions": video.combined_captions,
    }


def normal_annotation(video: PreparedVideo) -> dict[str, Any]:
    return _scene_fields(video, shuffled=False)


def shuffled_annotation(video: PreparedVideo) -> dict[str, Any]:
    return {
        **_scene_fields(video, shuffled=True),
        "shuffled_combined_captions": video.shuffled_combined_captions,
        "permutation": video.permutation,
    }


def export_corpus(
    corpus: VideoCorpus, rejections: RejectionLog, export_dir: str, lineage: dict[str, Any] | None = None
) -> int:
    """Write the export; return the number of videos written."""
    fs, root = fsspec.core.url_to_fs(export_dir)
    root = root.rstrip("/")

    def write_text(relative: str, text: str) -> None:
        path = f"{root}/{relative}"
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(path, "w") as handle:
            handle.write(text)

    def copy_file(source: str, relative: str) -> None:
        path = f"{root}/{relative}"
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(source, path)

    for video in corpus.videos:
        vid = video.video_id
        write_text(f"normal_annotations/{vid}.json", json.dumps(normal_annotation(video), indent=2))
        write_text(f"shuffled_annotations/{vid}.json", json.dumps(shuffled_annotation(video), indent=2))
        if video.has_video:
            copy_file(str(corpus.path(video.video_file)), f"normal_videos/{vid}.mp4")
        if video.has_shuffled_video:
            copy_file(str(corpus.path(video.shuffled_video_file)), f"shuffled_videos/{vid}.mp4")
        for index in range(len(video.frame_times)):
            copy_file(str(corpus.path(video.frame_file(index))), f"frames/{vid}/normal/{index:02d}.png")
        for position, index in enumerate(video.shuffled_frame_order):
            copy_file(str(corpus.path(video.frame_file(index))), f"frames/{vid}/shuffled/{position:02d}.png")
    write_text("rejections.jsonl", rejections.to_jsonl())
    write_text(
        "lineage.json",
        json.dumps(
            {
                **(lineage or {}),
                "videos": {v.video_id: {"shard": v.shard, "row": v.row} for v in corpus.videos},
                "rows_read": corpus.rows_read,
                "rejected": len(rejections),
            },
            indent=2,
        ),
    )
    return len(corpus.videos)

"""Typed records of the prepared corpus and their on-disk form.

A corpus folder holds ``manifest.parquet`` (one row per accepted video), the original
mp4 files under ``videos/``, the sampled frames under ``frames/<id>/NN.png`` (true order)
and, when rendered, ``shuffled_videos/<id>.mp4``. Rejections travel separately as a
:class:`RejectionLog`. Both are plain folders so they can live in any artifact store; a
corpus read from a remote store keeps only its manifest locally and fetches each media
file on first use (:class:`timewarp.data.remote_media.RemoteMedia`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from timewarp.data.remote_media import CorpusMediaError, RemoteMedia
from timewarp.data.scenes import SceneSpan
from timewarp.data.shuffle import combine_captions, permute

MANIFEST = "manifest.parquet"
REJECTIONS = "rejections.parquet"
# Safe as a file name everywhere: no separators, no leading dot, no "..".
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")


def check_video_id(video_id: str) -> str:
    """Return ``video_id`` if it is safe to use as a file name, else raise ValueError."""
    if not isinstance(video_id, str) or not _SAFE_ID.match(video_id) or ".." in video_id:
        raise ValueError(f"unsafe video id {video_id!r}: not a plain file name")
    return video_id


def video_id_from_filename(filename: str) -> str:
    """The id of ``<id>.mp4`` (FineVideo's ``original_video_filename``), checked to be a
    plain file name so no output path can leave its folder."""
    if not isinstance(filename, str) or not filename.lower().endswith(".mp4"):
        raise ValueError(f"original_video_filename {filename!r} is not an .mp4 file name")
    if "/" in filename or "\\" in filename or filename.startswith("."):
        raise ValueError(f"original_video_filename {filename!r} is a path, not a plain file name")
    return check_video_id(filename[: -len(".mp4")])


@dataclass(frozen=True)
class Rejection:
    """Why one input row did not become a video of the corpus."""

    video_id: str | None
    shard: str
    row: int
    stage: str  # read | schema | scenes | video | duplicate
    reason: str


@dataclass(frozen=True)
class PreparedVideo:
    """One accepted video: its kept scenes in true order, the shuffle and the frames."""

    video_id: str
    shard: str
    row: int
    annotation_filename: str
    duration: float
    fps: float
    width: int
    height: int
    scenes: list[SceneSpan]
    permutation: list[int]
    frame_scene: list[int]  # scene index (true order) of each sampled frame, in true order
    frame_times: list[float]
    skipped_scenes: list[str] = field(default_factory=list)
    has_shuffled_video: bool = False
    # False for a video known only by its frames (LLaVA-Hound's frame folders): no mp4.
    has_video: bool = True
    # Mismatches in annotation fields the method does not read ("<field>: <why>"), kept as warnings.
    schema_warnings: list[str] = field(default_factory=list)

    @property
    def video_file(self) -> str:
        return f"videos/{self.video_id}.mp4"

    @property
    def shuffled_video_file(self) -> str:
        return f"shuffled_videos/{self.video_id}.mp4"

    def frame_file(self, index: int) -> str:
        return f"frames/{self.video_id}/{index:02d}.png"

    @property
    def media_files(self) -> list[str]:
        """Every file of this video in the corpus folder."""
        files = [self.video_file] if self.has_video else []
        files += [self.frame_file(i) for i in range(len(self.frame_times))]
        if self.has_shuffled_video:
            files.append(self.shuffled_video_file)
        return files

    @property
    def shuffled_scenes(self) -> list[SceneSpan]:
        return permute(self.scenes, self.permutation)

    @property
    def shuffled_frame_order(self) -> list[int]:
        """Indices of the true-order frames as the shuffled video shows them: each
        scene's frames, scenes in permuted order."""
        return [i for scene in self.permutation for i, s in enumerate(self.frame_scene) if s == scene]

    @property
    def combined_captions(self) -> str:
        return combine_captions(self.scenes)

    @property
    def shuffled_combined_captions(self) -> str:
        return combine_captions(self.shuffled_scenes)

    @property
    def kept_seconds(self) -> float:
        return sum(scene.duration for scene in self.scenes)


_SCENE_TYPE = pa.struct(
    [("scene_id", pa.int64()), ("start", pa.float64()), ("end", pa.float64()), ("caption", pa.string())]
)
MANIFEST_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("shard", pa.string()),
        ("row", pa.int64()),
        ("annotation_filename", pa.string()),
        ("duration", pa.float64()),
        ("fps", pa.float64()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("scenes", pa.list_(_SCENE_TYPE)),
        ("permutation", pa.list_(pa.int64())),
        ("frame_scene", pa.list_(pa.int64())),
        ("frame_times", pa.list_(pa.float64())),
        ("skipped_scenes", pa.list_(pa.string())),
        ("has_shuffled_video", pa.bool_()),
        ("has_video", pa.bool_()),  # absent from older manifests: the field's default
        ("schema_warnings", pa.list_(pa.string())),  # likewise
    ]
)
REJECTION_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("shard", pa.string()),
        ("row", pa.int64()),
        ("stage", pa.string()),
        ("reason", pa.string()),
    ]
)


@dataclass
class VideoCorpus:
    """Accepted videos plus the folder holding their media. With ``remote`` set, ``root``
    is a local cache: a file not yet in it is fetched when :meth:`path` first asks for it."""

    root: Path
    videos: list[PreparedVideo]
    # Rows read to make this corpus; len(videos) + rejections == rows_read.
    rows_read: int = 0
    remote: RemoteMedia | None = None

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def location(self) -> str:
        """Where the corpus's files are kept, for messages."""
        return self.remote.location if self.remote is not None else str(self.root)

    def path(self, relative: str) -> Path:
        """The local file of ``relative`` (fetched first when the corpus is remote)."""
        local = self.root / relative
        if self.remote is not None:
            self.remote.ensure(relative, local)
        return local

    def fetch_all(self) -> None:
        """Bring every media file into ``root`` (nothing to do for a local corpus)."""
        if self.remote is not None:
            for video in self.videos:
                for relative in video.media_files:
                    self.path(relative)

    def frames(self, video: PreparedVideo) -> np.ndarray:
        """Sampled frames in true order, (N, H, W, 3) uint8."""
        return np.stack([self._image(video.frame_file(i)) for i in range(len(video.frame_times))])

    def _image(self, relative: str) -> np.ndarray:
        path = self.path(relative)
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB"))
        except (OSError, SyntaxError) as error:  # missing, truncated or not an image at all (PIL raises both)
            raise CorpusMediaError(
                f"frame {relative!r} of the corpus stored at {self.location} cannot be read ({error}); "
                "re-run the step that produced the corpus"
            ) from error

    def shuffled_frames(self, video: PreparedVideo) -> np.ndarray:
        """The same frames as the shuffled video shows them (no re-encoding involved)."""
        return self.frames(video)[video.shuffled_frame_order]

    def write_manifest(self) -> None:
        rows = [
            {**asdict(video), "scenes": [asdict(scene) for scene in video.scenes]} for video in self.videos
        ]
        table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
        table = table.replace_schema_metadata({"rows_read": str(self.rows_read)})
        pq.write_table(table, self.root / MANIFEST)

    @classmethod
    def read(cls, root: str | Path, remote: RemoteMedia | None = None) -> "VideoCorpus":
        """The corpus whose manifest is in ``root``, or, with ``remote``, fetched from it
        into ``root`` (media then follow file by file as they are used)."""
        root = Path(root)
        if remote is not None:
            remote.ensure(MANIFEST, root / MANIFEST)
        table = pq.read_table(root / MANIFEST)
        videos = []
        for row in table.to_pylist():
            row["scenes"] = [SceneSpan(**scene) for scene in row["scenes"]]
            videos.append(PreparedVideo(**row))
        rows_read = int((table.schema.metadata or {}).get(b"rows_read", b"0"))
        return cls(root=root, videos=videos, rows_read=rows_read, remote=remote)

    def summary(self) -> dict[str, int | float]:
        return {
            "videos": len(self.videos),
            "scenes": sum(len(v.scenes) for v in self.videos),
            "kept_seconds": round(sum(v.kept_seconds for v in self.videos), 3),
            "shuffled_videos_rendered": sum(v.has_shuffled_video for v in self.videos),
            "videos_with_schema_warnings": sum(bool(v.schema_warnings) for v in self.videos),
        }

    def schema_warning_counts(self) -> dict[str, int]:
        """Videos per schema warning (``"<field>: <why>"``), most frequent first."""
        return dict(Counter(w for v in self.videos for w in v.schema_warnings).most_common())


@dataclass
class RejectionLog:
    """Every input row that did not become a video, with the stage and reason."""

    rejections: list[Rejection] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rejections)

    def by_stage(self) -> dict[str, int]:
        return dict(sorted(Counter(r.stage for r in self.rejections).items()))

    def write(self, path: str | Path) -> None:
        table = pa.Table.from_pylist([asdict(r) for r in self.rejections], schema=REJECTION_SCHEMA)
        pq.write_table(table, path)

    @classmethod
    def read(cls, path: str | Path) -> "RejectionLog":
        return cls([Rejection(**row) for row in pq.read_table(path).to_pylist()])

    def to_jsonl(self) -> str:
        return "".join(json.dumps(asdict(r)) + "\n" for r in self.rejections)

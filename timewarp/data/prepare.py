"""Stages 1-4 for a stream of FineVideo rows: scenes, a decode probe, the shuffle, frames.

Every input row ends as exactly one :class:`PreparedVideo` or one :class:`Rejection`.
The original mp4 is kept as is and frames are read straight from it; nothing is
re-encoded unless shuffled videos are asked for.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from timewarp.data.corpus import PreparedVideo, Rejection, RejectionLog, VideoCorpus, video_id_from_filename
from timewarp.data.finevideo import schema_warnings, validate_annotation
from timewarp.data.ingest import RawRow, ShardSet, iter_rows
from timewarp.data.scenes import SceneRuleError, SceneRules, frame_times, select_scenes
from timewarp.data.shuffle import scene_permutation
from timewarp.data.video import VideoDecodeError, read_frames, render_clips, video_info, write_png


@dataclass(frozen=True)
class PrepareConfig:
    max_seconds: float = 105.0
    min_scenes: int = 2
    integer_timestamps: bool = False
    seed: int = 0
    frames_per_video: int = 8
    render_shuffled_videos: bool = False
    video_backend: str = "auto"

    @property
    def scene_rules(self) -> SceneRules:
        return SceneRules(self.max_seconds, self.min_scenes, self.integer_timestamps)


class _Reject(Exception):
    def __init__(self, stage: str, reason: str, video_id: str | None = None):
        super().__init__(reason)
        self.stage, self.reason, self.video_id = stage, reason, video_id


def prepare_row(row: RawRow, config: PrepareConfig, out_dir: Path) -> PreparedVideo | Rejection:
    """Turn one row into a prepared video (media written under ``out_dir``) or a rejection.

    On rejection nothing of the row is left under ``out_dir``.
    """
    video_id = None
    written: list[Path] = []
    try:
        annotation_raw = row.annotation
        if isinstance(annotation_raw, str) and row.mp4 is None:
            raise _Reject("read", annotation_raw)
        if isinstance(annotation_raw, (str, bytes)):
            try:
                annotation_raw = json.loads(annotation_raw)
            except ValueError as error:
                raise _Reject("schema", f"json column is not valid JSON: {error}") from None
        try:
            annotation = validate_annotation(annotation_raw)
        except ValueError as error:
            raise _Reject("schema", str(error)) from None
        try:
            video_id = video_id_from_filename(annotation.original_video_filename)
        except ValueError as error:
            raise _Reject("schema", str(error)) from None
        try:
            selection = select_scenes(annotation, config.scene_rules)
        except SceneRuleError as error:
            raise _Reject("scenes", str(error), video_id) from None
        if not row.mp4:
            raise _Reject("video", "mp4 bytes are empty", video_id)

        video_path = out_dir / "videos" / f"{video_id}.mp4"
        video_path.parent.mkdir(parents=True, exist_ok=True)
        video_path.write_bytes(row.mp4)
        written.append(video_path)
        scenes = selection.scenes
        try:
            info = video_info(video_path)
            frame_plan = frame_times(scenes, config.frames_per_video)
            kept_end = scenes[-1].end
            if kept_end > info.duration + 1.0 / info.fps:
                raise VideoDecodeError(
                    f"kept scenes end at {kept_end:.3f}s, past the video's duration {info.duration:.3f}s"
                )
            # Probe both ends of the kept span, then the sampled frames, in one pass.
            probe_times = [scenes[0].start, max(scenes[0].start, kept_end - 1.0 / info.fps)]
            frames = read_frames(video_path, probe_times + [t for _, t in frame_plan], config.video_backend)
        except VideoDecodeError as error:
            raise _Reject("video", str(error), video_id) from None

        frame_dir = out_dir / "frames" / video_id
        frame_dir.mkdir(parents=True, exist_ok=True)
        written.append(frame_dir)
        for index, frame in enumerate(frames[len(probe_times):]):
            write_png(frame_dir / f"{index:02d}.png", frame)

        permutation = scene_permutation(video_id, len(scenes), config.seed)
        video = PreparedVideo(
            video_id=video_id,
            shard=row.shard,
            row=row.row,
            annotation_filename=annotation.original_json_filename,
            duration=info.duration,
            fps=info.fps,
            width=info.width,
            height=info.height,
            scenes=scenes,
            permutation=permutation,
            frame_scene=[scene for scene, _ in frame_plan],
            frame_times=[t for _, t in frame_plan],
            skipped_scenes=selection.skipped,
            has_shuffled_video=config.render_shuffled_videos,
            schema_warnings=schema_warnings(annotation_raw),
        )
        if config.render_shuffled_videos:
            shuffled_path = out_dir / video.shuffled_video_file
            shuffled_path.parent.mkdir(parents=True, exist_ok=True)
            written.append(shuffled_path)
            try:
                render_clips(video_path, [(s.start, s.end) for s in video.shuffled_scenes], shuffled_path)
            except VideoDecodeError as error:
                raise _Reject("video", f"rendering the shuffled video failed: {error}", video_id) from None
        return video
    except _Reject as rejection:
        _remove(written)
        return Rejection(rejection.video_id or video_id, row.shard, row.row, rejection.stage, rejection.reason)
    except Exception as error:  # a bug or an unforeseen input must not stop the run
        _remove(written)
        return Rejection(video_id, row.shard, row.row, "internal", f"{type(error).__name__}: {error}")


def _remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def machine_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (a
    pod's CPU limit) where one is set; ``os.cpu_count()`` sees the whole node in a pod."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def _staging_dir(staging: Path, row: RawRow) -> Path:
    # Per-row folders: two rows claiming one id never write to the same place.
    return staging / f"{hashlib.sha1(row.shard.encode()).hexdigest()[:12]}-{row.row}"


def _results(
    rows: Iterable[RawRow], config: PrepareConfig, staging: Path, workers: int
) -> Iterator[tuple[RawRow, PreparedVideo | Rejection]]:
    if workers <= 1:
        for row in rows:
            yield row, prepare_row(row, config, _staging_dir(staging, row))
        return
    # Bounded in-flight work keeps memory flat: at most 2 rows per worker are held.
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending: deque[tuple[RawRow, Future]] = deque()
        for row in rows:
            pending.append((row, pool.submit(prepare_row, row, config, _staging_dir(staging, row))))
            if len(pending) >= 2 * workers:
                done_row, future = pending.popleft()
                yield done_row, future.result()
        while pending:
            done_row, future = pending.popleft()
            yield done_row, future.result()


def _claim(video_id: str, row: RawRow, seen: dict[str, tuple[str, int]]) -> Rejection | None:
    """Duplicate policy: the first (shard, row) holding an id keeps it; later rows are
    rejected, so no two outputs share an id."""
    if video_id in seen:
        shard, index = seen[video_id]
        return Rejection(video_id, row.shard, row.row, "duplicate", f"video id already taken by {shard} row {index}")
    seen[video_id] = (row.shard, row.row)
    return None


def prepare_corpus(
    shards: ShardSet,
    out_dir: str | Path,
    config: PrepareConfig,
    *,
    max_videos: int | None = None,
    group: int = 0,
    groups: int = 1,
    workers: int | None = None,
) -> tuple[VideoCorpus, RejectionLog]:
    """Prepare the rows of shard group ``group`` into a corpus folder at ``out_dir``, with
    ``workers`` processes (unset: one per core, :func:`machine_cores`)."""
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1 or unset (one per core), got {workers}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    selection = shards.selection(max_videos, group, groups)
    total = sum(rows for _, rows in selection)
    workers = min(workers or machine_cores(), max(1, total))  # no idle processes for a few rows

    def rows() -> Iterator[RawRow]:
        for shard, limit in selection:
            yield from iter_rows(shard, limit)

    videos: list[PreparedVideo] = []
    log = RejectionLog()
    seen: dict[str, tuple[str, int]] = {}
    rows_read = 0
    # Media is staged per row until the row's id is known to be unique.
    staging = out_dir / ".staging"
    for row, result in tqdm(
        _results(rows(), config, staging, workers), total=total, desc=f"prepare videos (group {group})", unit="video"
    ):
        rows_read += 1
        if isinstance(result, Rejection):
            log.rejections.append(result)
            continue
        duplicate = _claim(result.video_id, row, seen)
        if duplicate is not None:
            log.rejections.append(duplicate)
            shutil.rmtree(_staging_dir(staging, row), ignore_errors=True)
            continue
        _move_media(result, _staging_dir(staging, row), out_dir)
        videos.append(result)
    shutil.rmtree(staging, ignore_errors=True)
    corpus = VideoCorpus(root=out_dir, videos=videos, rows_read=rows_read)
    corpus.write_manifest()
    return corpus, log


def link_or_copy(source: Path, destination: Path) -> None:
    """A hard link where both sides share a file system (media files are never written
    after they are made, so a link is a copy that costs nothing), a copy otherwise."""
    if destination.exists() and os.path.samefile(source, destination):
        return
    destination.unlink(missing_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copyfile(source, destination)


def _move_media(video: PreparedVideo, source: Path, target: Path) -> None:
    for relative in video.media_files:
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source / relative, destination)


def merge_corpora(
    parts: list[tuple[VideoCorpus, RejectionLog]], out_dir: str | Path
) -> tuple[VideoCorpus, RejectionLog]:
    """One corpus from shard-group parts, in shard order; a video id present in two
    parts is kept from the earlier (shard, row) and the other is rejected."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    candidates = sorted(
        ((video, corpus) for corpus, _ in parts for video in corpus.videos), key=lambda item: (item[0].shard, item[0].row)
    )
    log = RejectionLog([r for _, part_log in parts for r in part_log.rejections])
    seen: dict[str, tuple[str, int]] = {}
    videos = []
    for video, corpus in candidates:
        duplicate = _claim(video.video_id, RawRow(video.shard, video.row, None, None), seen)
        if duplicate is not None:
            log.rejections.append(duplicate)
            continue
        for relative in video.media_files:  # file by file: a part read from a remote store fetches each
            destination = out_dir / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(corpus.path(relative), destination)
        videos.append(video)
    log.rejections.sort(key=lambda r: (r.shard, r.row))
    merged = VideoCorpus(root=out_dir, videos=videos, rows_read=sum(corpus.rows_read for corpus, _ in parts))
    merged.write_manifest()
    return merged, log

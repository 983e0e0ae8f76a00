"""LLaVA-Hound's DPO set (ShareGPTVideo's ``sft_dpo_17k.jsonl``, the paper's Base-DPO arm)
as a :class:`VideoCorpus` of frames plus a :class:`PreferenceDataset`, and an offline
miniature in the same layout.

Each jsonl line is one pair ``{id, video, prompt, answer, chosen, chosen_score, rejected,
rejected_score}``; ``video`` names a folder ``<frames_root>/<video>/`` of frame images
(``c01.jpg``, ``c02.jpg``, ... in natural name order). Both locations may be any fsspec URI.
Every line becomes a pair or a :class:`Rejection` saying why.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from timewarp.data.corpus import PreparedVideo, Rejection, RejectionLog, VideoCorpus, check_video_id
from timewarp.data.sample import MOTIONS, PALETTE, SHAPES, SHORT_MOTIONS, SampleSpec, _draw, _plan_scenes
from timewarp.data.scenes import SceneSpan
from timewarp.data.video import write_png
from timewarp.generation.datasets import PreferenceDataset
from timewarp.generation.records import PreferencePair
from timewarp.models.frames import select_frames
from timewarp.seeding import stable_rng
from timewarp.text import normalise_text

SOURCE = "llava-hound"
RECORDS_FILE = "sft_dpo_17k.jsonl"
TEXT_FIELDS = ("id", "video", "prompt", "answer", "chosen", "rejected")
SCORE_FIELDS = ("chosen_score", "rejected_score")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Frame folders are read by threads (remote stores answer one small file at a time), a
# batch of records at a time so memory does not follow the file's size.
_READ_THREADS = 8
_BATCH_LINES = 256


@dataclass(frozen=True)
class _HoundRecord:
    id: str
    video: str
    prompt: str
    chosen: str
    rejected: str


@dataclass(frozen=True)
class _BadRecord:
    reason: str
    video: str | None = None  # the record's ``video`` when it has a string one


@dataclass(frozen=True)
class _Frames:
    """A frame folder converted into ``frames/<video>/NN.png``."""

    count: int
    width: int
    height: int


def _check_record(line: bytes) -> _HoundRecord | _BadRecord:
    """The record on ``line``, or why it is not a valid pair."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        return _BadRecord(f"not UTF-8 text ({error})")
    if not text.strip():
        return _BadRecord("blank line: expected one JSON object")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        return _BadRecord(f"not JSON ({error})")
    if not isinstance(record, dict):
        return _BadRecord(f"not a JSON object but a JSON {type(record).__name__}")
    video = record.get("video") if isinstance(record.get("video"), str) else None
    reason = _record_problem(record)
    if reason is not None:
        return _BadRecord(reason, video)
    return _HoundRecord(record["id"], record["video"], record["prompt"], record["chosen"], record["rejected"])


def _record_problem(record: dict[str, Any]) -> str | None:
    """What is wrong with a decoded record's fields, or None."""
    missing = [name for name in (*TEXT_FIELDS, *SCORE_FIELDS) if name not in record]
    if missing:
        return f"missing field(s) {missing}"
    for name in TEXT_FIELDS:
        value = record[name]
        if not isinstance(value, str) or not value.strip():
            return f"field {name!r} must be a non-empty string, got {value!r} ({type(value).__name__})"
    for name in SCORE_FIELDS:
        value = record[name]
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
        ):
            return f"field {name!r} must be a finite number or null, got {value!r} ({type(value).__name__})"
    if normalise_text(record["chosen"]) == normalise_text(record["rejected"]):
        return f"chosen and rejected are the same answer: {record['chosen']!r}"
    try:
        check_video_id(record["video"])
    except ValueError as error:
        return f"field 'video': {error}"
    return None


def _natural_key(path: str) -> list[int | str]:
    """``c2.jpg`` before ``c10.jpg``: digit runs compare as numbers."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


class _FrameFolders:
    """Reads ``<frames_root>/<video>/`` and writes its picked frames as PNG into the corpus."""

    def __init__(self, frames_root: str, out_dir: Path, frames_per_video: int):
        self.frames_root = frames_root.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(frames_root)
        self.out_dir = out_dir
        self.frames_per_video = frames_per_video

    def convert(self, video: str) -> _Frames | str:
        """The converted frames of ``video``, or why they cannot be used (nothing written then)."""
        where = f"{self.frames_root}/{video}"
        try:
            entries = self.fs.ls(f"{self.root.rstrip('/')}/{video}", detail=False)
        except FileNotFoundError:
            return f"frame folder {where}/ is missing"
        images = sorted((e for e in entries if e.lower().endswith(IMAGE_SUFFIXES)), key=_natural_key)
        if not images:
            return f"frame folder {where}/ holds no image files ({', '.join(IMAGE_SUFFIXES)})"
        picked = select_frames(np.array(images, dtype=object), self.frames_per_video)
        decoded = []
        for path in picked:
            try:
                with self.fs.open(path, "rb") as handle, Image.open(handle) as image:
                    decoded.append(image.convert("RGB"))
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
                return f"frame {where}/{path.rsplit('/', 1)[-1]} cannot be decoded ({error})"
        sizes = sorted({image.size for image in decoded})
        if len(sizes) > 1:
            return f"frames of {where}/ differ in size {sizes}: a video's frames must share one size"
        target = self.out_dir / "frames" / video
        target.mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(decoded):
            write_png(target / f"{index:02d}.png", np.asarray(image))
        width, height = sizes[0]
        return _Frames(len(decoded), width, height)


def _hound_video(video: str, frames: _Frames, shard: str, row: int) -> PreparedVideo:
    """A frame folder as a one-scene video with one frame a second. The scene's caption
    stays empty: the set has questions about the video, not a description of it."""
    count = frames.count
    return PreparedVideo(
        video_id=video, shard=shard, row=row, annotation_filename=video, duration=float(count), fps=1.0,
        width=frames.width, height=frames.height, scenes=[SceneSpan(0, 0.0, float(count), "")], permutation=[0],
        frame_scene=[0] * count, frame_times=[float(i) for i in range(count)], has_video=False,
    )


def _pair(record: _HoundRecord) -> PreferencePair:
    return PreferencePair(
        id=record.id, video_id=record.video, question=record.prompt, chosen=record.chosen, rejected=record.rejected,
        question_type="llava_hound", permutation=[], generator=SOURCE, source=SOURCE,
    )


def _batch_size(max_pairs: int | None, kept: int) -> int:
    """Lines to read next: no more than valid pairs are still wanted, so none is read in vain."""
    return _BATCH_LINES if max_pairs is None else min(_BATCH_LINES, max_pairs - kept)


def read_hound_pairs(
    records_uri: str,
    frames_root: str,
    out_dir: str | Path,
    *,
    frames_per_video: int = 8,
    max_pairs: int | None = None,
) -> tuple[VideoCorpus, PreferenceDataset, RejectionLog]:
    """The pairs of ``records_uri`` (jsonl, ``.gz`` too) with their videos' frames from
    ``frames_root``, ``frames_per_video`` picked evenly per video and written once per video
    under ``out_dir``; the first ``max_pairs`` valid pairs when given. Lines read = pairs +
    rejections; a video whose frames cannot be used rejects each of its pairs."""
    if frames_per_video < 1:
        raise ValueError(f"frames_per_video must be at least 1, got {frames_per_video}")
    if max_pairs is not None and max_pairs < 1:
        raise ValueError(f"max_pairs must be at least 1 or None, got {max_pairs}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folders = _FrameFolders(frames_root, out_dir, frames_per_video)
    outcomes: dict[str, _Frames | str] = {}  # video -> its frames, or why they are unusable
    videos: dict[str, PreparedVideo] = {}
    pairs: list[PreferencePair] = []
    pair_ids: set[str] = set()
    log = RejectionLog()
    rows_read = 0

    def reject(row: int, video: str | None, stage: str, reason: str) -> None:
        log.rejections.append(Rejection(video, records_uri, row, stage, reason))

    with ThreadPoolExecutor(_READ_THREADS) as pool, fsspec.open(records_uri, "rb", compression="infer") as handle:
        lines = enumerate(tqdm(handle, desc="hound records", unit="line"))
        while batch := list(islice(lines, _batch_size(max_pairs, len(pairs)))):
            checked = [(row, _check_record(line)) for row, line in batch]
            good = [record for _, record in checked if isinstance(record, _HoundRecord)]
            new = list(dict.fromkeys(record.video for record in good if record.video not in outcomes))
            outcomes.update(zip(new, pool.map(folders.convert, new)))
            for row, record in checked:
                rows_read += 1
                if isinstance(record, _BadRecord):
                    reject(row, record.video, "hound_record", record.reason)
                elif record.id in pair_ids:
                    reason = f"duplicate pair id {record.id!r} (an earlier line has it)"
                    reject(row, record.video, "hound_record", reason)
                elif isinstance(frames := outcomes[record.video], str):
                    reject(row, record.video, "hound_frames", frames)
                else:
                    videos.setdefault(record.video, _hound_video(record.video, frames, records_uri, row))
                    pair_ids.add(record.id)
                    pairs.append(_pair(record))
    for video, frames in outcomes.items():  # converted for lines with a duplicate pair id only
        if isinstance(frames, _Frames) and video not in videos:
            shutil.rmtree(out_dir / "frames" / video, ignore_errors=True)
    corpus = VideoCorpus(root=out_dir, videos=list(videos.values()), rows_read=rows_read)
    corpus.write_manifest()
    generator = {"backend": SOURCE, "records": records_uri, "frames_root": frames_root}
    return corpus, PreferenceDataset(pairs, media_root=str(out_dir), generator=generator), log


# ---- the offline miniature -----------------------------------------------------------------

_QUESTION_KINDS = ("colour", "motion", "shape")


def _opposite(motion: str) -> str:
    """The motion that runs the other way (start and end swapped)."""
    start, end = MOTIONS[motion]
    return next(other for other, path in MOTIONS.items() if path == (end, start))


def _miniature_pair(
    kind: str, colour: str, shape: str, motion: str, rng: np.random.Generator
) -> tuple[str, str, str]:
    """(prompt, chosen, rejected) of one general (not temporal) question, in the words of the
    FineVideo sample's short captions so a tiny tokenizer knows them."""
    moves = SHORT_MOTIONS[motion]
    if kind == "colour":
        other = str(rng.choice([c for c in PALETTE if c != colour]))
        return "What colour is the scene?", f"{colour.capitalize()} scene.", f"{other.capitalize()} scene."
    if kind == "motion":
        opposite = SHORT_MOTIONS[_opposite(motion)]
        return f"Which way does the {shape} move?", f"The {shape} {moves}.", f"The {shape} {opposite}."
    other_shape = next(s for s in SHAPES if s != shape)
    return "Which shape moves?", f"The {shape} {moves}.", f"The {other_shape} {moves}."


def write_hound_miniature(
    root: str | Path,
    *,
    videos: int = 60,
    pairs_per_video: int = 2,
    seed: int = 0,
    frames_per_video: int = 8,
    size: int = 56,
) -> tuple[str, str]:
    """``<root>/sft_dpo_17k.jsonl`` and ``<root>/frames/<video>/cNN.jpg`` in LLaVA-Hound's
    layout: one-scene clips of a shape moving over a coloured background (drawn as the
    FineVideo sample draws them) with general questions about colour, motion and shape.
    Deterministic for ``seed``. Returns (records path, frames root)."""
    if videos < 1 or frames_per_video < 1 or size < 8:
        raise ValueError(
            f"need videos >= 1, frames_per_video >= 1 and size >= 8; got {videos}, {frames_per_video}, {size}"
        )
    if not 1 <= pairs_per_video <= len(_QUESTION_KINDS):
        raise ValueError(
            f"pairs_per_video must be 1..{len(_QUESTION_KINDS)} (one per question kind), got {pairs_per_video}"
        )
    root = Path(root)
    spec = SampleSpec(width=size, height=size, min_scenes=1, max_scenes=1, min_scene_seconds=1.0,
                      max_scene_seconds=1.0, short_captions=True)
    records = []
    for index in range(videos):
        video = f"hound_{index:04d}"
        rng = stable_rng(seed, "hound", video)
        scene = _plan_scenes(rng, spec)[0]
        folder = root / "frames" / video
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(frames_per_video):
            t = scene.start + (k + 0.5) * (scene.end - scene.start) / frames_per_video
            Image.fromarray(_draw(scene, t, spec)).save(folder / f"c{k + 1:02d}.jpg", quality=90)
        for k in range(pairs_per_video):
            kind = _QUESTION_KINDS[(index + k) % len(_QUESTION_KINDS)]
            motion = scene.activities[0].motion
            prompt, chosen, rejected = _miniature_pair(kind, scene.colour, scene.shape, motion, rng)
            records.append({"id": f"{video}_{kind}", "video": video, "prompt": prompt, "answer": chosen,
                            "chosen": chosen, "chosen_score": 5.0, "rejected": rejected, "rejected_score": 1.0})
    records_path = root / RECORDS_FILE
    records_path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(records_path), str(root / "frames")

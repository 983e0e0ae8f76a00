"""A FineVideo miniature: parquet shards in FineVideo's layout, made offline.

Each video is a few scenes; every scene has its own background colour and a shape that
moves as its activity descriptions say, so captions and pixels agree and the order of
scenes can be read back from the frames. Deterministic for a seed.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from timewarp.data.finevideo import format_timestamp
from timewarp.seeding import stable_rng
from timewarp.data.sample_texture import Texture, draw_distractors
from timewarp.data.video import encode_video

# Background colours are far apart in RGB so a frame's scene is unambiguous after H.264.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (130, 40, 180),
    "orange": (250, 130, 20),
    "cyan": (30, 210, 220),
    "pink": (250, 120, 190),
    "brown": (120, 70, 30),
    "gray": (128, 128, 128),
}
SHAPES = ("circle", "square")
SHAPE_COLOURS: dict[str, tuple[int, int, int]] = {"white": (250, 250, 250), "black": (10, 10, 10)}
# name: (start x, start y) -> (end x, end y) as fractions of the frame.
MOTIONS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "moves from left to right": ((0.2, 0.5), (0.8, 0.5)),
    "moves from right to left": ((0.8, 0.5), (0.2, 0.5)),
    "rises from the bottom to the top": ((0.5, 0.8), (0.5, 0.2)),
    "falls from the top to the bottom": ((0.5, 0.2), (0.5, 0.8)),
}
#: The motions in two words, for short captions.
SHORT_MOTIONS: dict[str, str] = dict(
    zip(MOTIONS, ("moves right", "moves left", "rises", "falls"))
)


@dataclass(frozen=True)
class SampleSpec:
    """Size of the generated videos; the defaults keep a test corpus to seconds."""

    width: int = 96
    height: int = 64
    fps: int = 8
    min_scenes: int = 3
    max_scenes: int = 5
    min_scene_seconds: float = 1.0
    max_scene_seconds: float = 2.5
    rows_per_shard: int = 8
    row_group_size: int = 4
    # Short captions: the colour, then the motion ("Red scene. The circle rises."). Events
    # are named by a caption's first sentence, so questions and answers name scenes by
    # colour, in a word or two.
    short_captions: bool = False
    # Camera-like pixels: gradient backgrounds that drift, film grain and moving distractor
    # shapes, so decoding and encoding cost what real footage costs (flat colours compress
    # to almost nothing and decode far faster than FineVideo's videos).
    textured: bool = False
    encoder_preset: str = "ultrafast"

    @classmethod
    def learnable(cls) -> "SampleSpec":
        """Small videos a tiny model learns from in a minute on a CPU: four one-second
        scenes at 56x56 (two sampled frames a scene fill one Qwen2-VL temporal patch when 8
        frames are taken), one motion a scene, short captions naming colour and motion."""
        return cls(
            width=56, height=56, fps=4, min_scenes=4, max_scenes=4, min_scene_seconds=1.0,
            max_scene_seconds=1.0, rows_per_shard=100, row_group_size=25, short_captions=True,
        )

    @classmethod
    def preset(cls, name: str) -> "SampleSpec":
        """``small`` (the defaults: fast tests), ``learnable`` or ``realistic``."""
        presets = {"small": cls, "learnable": cls.learnable, "realistic": cls.realistic}
        if name not in presets:
            raise ValueError(f"unknown sample preset {name!r}; known: {sorted(presets)}")
        return presets[name]()

    @classmethod
    def realistic(cls) -> "SampleSpec":
        """FineVideo-like videos for benchmarks: 640x360, 30 fps, 60-105 s in 5-8 scenes,
        textured (gradients, grain, motion) and encoded like web video (x264 ``veryfast``:
        CABAC, B-frames, deblocking), not ``ultrafast``."""
        return cls(
            width=640, height=360, fps=30, min_scenes=5, max_scenes=8, min_scene_seconds=12.0,
            max_scene_seconds=13.0, rows_per_shard=33, row_group_size=8, textured=True,
            encoder_preset="veryfast",
        )


@dataclass(frozen=True)
class _Activity:
    start: float
    end: float
    motion: str
    description: str


@dataclass(frozen=True)
class _Scene:
    start: float
    end: float
    colour: str
    shape: str
    shape_colour: str
    activities: list[_Activity]


def _plan_scenes(rng: np.random.Generator, spec: SampleSpec) -> list[_Scene]:
    count = int(rng.integers(spec.min_scenes, spec.max_scenes + 1))
    colours = rng.choice(list(PALETTE), size=count, replace=False)
    scenes, clock = [], 0.0
    for colour in colours:
        length = round(float(rng.uniform(spec.min_scene_seconds, spec.max_scene_seconds)), 3)
        shape = str(rng.choice(SHAPES))
        shape_colour = str(rng.choice(list(SHAPE_COLOURS)))
        # Activities sit inside the scene with a short margin, as detector cuts do.
        margin = round(min(0.25, length / 10), 3)
        inner_start, inner_end = clock + margin, clock + length - margin
        parts = 2 if length >= 2.0 and rng.random() < 0.5 else 1
        bounds = np.linspace(inner_start, inner_end, parts + 1)
        motions = rng.choice(list(MOTIONS), size=parts, replace=False)
        activities = []
        for k, motion in enumerate(motions):
            subject = f"A {shape_colour} {shape}" if k == 0 else f"The {shape_colour} {shape}"
            description = f"{subject} {motion} on {_article(colour)} {colour} background."
            if spec.short_captions:
                description = f"{str(colour).capitalize()} scene. The {shape} {SHORT_MOTIONS[str(motion)]}."
            activities.append(
                _Activity(
                    start=round(float(bounds[k]), 3),
                    end=round(float(bounds[k + 1]), 3),
                    motion=str(motion),
                    description=description,
                )
            )
        scenes.append(_Scene(clock, clock + length, str(colour), shape, shape_colour, activities))
        clock = round(clock + length, 3)
    return scenes


def caption_vocabulary() -> list[str]:
    """Sentences holding every word of the sample's short captions, lower- and
    upper-case: tiny tokenizers train on them so that a colour is one token."""
    # One sentence per colour: an answer starts with its capitalised colour.
    lines = [f"{colour.capitalize()} scene. After the {colour} scene." for colour in PALETTE]
    lines += [f"The {shape} {motion}." for shape in SHAPES for motion in SHORT_MOTIONS.values()]
    return lines


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _draw(scene: _Scene, t: float, spec: SampleSpec, texture: Texture | None = None, index: int = 0) -> np.ndarray:
    if texture is None:
        frame = np.empty((spec.height, spec.width, 3), dtype=np.uint8)
        frame[:] = PALETTE[scene.colour]
    else:
        frame = texture.background(PALETTE[scene.colour], t, index)
        draw_distractors(frame, t)
    activity = next((a for a in scene.activities if a.start <= t < a.end), None)
    if activity is None:  # in the margins the shape rests where the nearest activity is
        activity = scene.activities[0] if t < scene.activities[0].start else scene.activities[-1]
    progress = min(1.0, max(0.0, (t - activity.start) / max(activity.end - activity.start, 1e-6)))
    (x0, y0), (x1, y1) = MOTIONS[activity.motion]
    cx = int((x0 + (x1 - x0) * progress) * spec.width)
    cy = int((y0 + (y1 - y0) * progress) * spec.height)
    radius = max(3, spec.height // 8)
    ys, xs = np.ogrid[: spec.height, : spec.width]
    if scene.shape == "circle":
        mask = (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2
    else:
        mask = (abs(xs - cx) <= radius) & (abs(ys - cy) <= radius)
    frame[mask] = SHAPE_COLOURS[scene.shape_colour]
    return frame


def _annotation(video_id: str, scenes: list[_Scene], spec: SampleSpec, duration: float) -> dict:
    ts = format_timestamp

    def span(start: float, end: float) -> dict:
        return {"start_timestamp": ts(start), "end_timestamp": ts(end)}

    scene_rows = []
    for number, scene in enumerate(scenes, start=1):
        shape_name = f"{scene.shape_colour} {scene.shape}"
        scene_rows.append(
            {
                "sceneId": number,
                "title": f"The {shape_name} on {scene.colour}",
                "timestamps": span(scene.start, scene.end),
                "cast": ["shape"],
                "activities": [
                    {"description": a.description, "timestamp": span(a.start, a.end)}
                    for a in scene.activities
                ],
                "props": [{"name": f"{scene.colour} background", "timestamp": span(scene.start, scene.end)}],
                "videoEditingDetails": [
                    {"description": "Hard cut to a new background colour.", "timestamps": span(scene.start, scene.start)}
                ],
                "mood": {
                    "description": "Calm and geometric.",
                    "keyMoments": [{"timestamp": ts(scene.start), "changeDescription": f"The background becomes {scene.colour}."}],
                },
                "narrativeProgression": [
                    {"description": a.description, "timestamp": ts(a.start)} for a in scene.activities
                ],
                "characterInteraction": [],
                "thematicElements": "Motion and colour.",
                "contextualRelevance": "Synthetic scene for temporal reasoning tests.",
                "dynamismScore": 0.5,
                "audioVisualCorrelation": 0.0,
            }
        )
    colours = ", then ".join(s.colour for s in scenes)
    return {
        "content_fine_category": "Synthetic Shapes",
        "content_parent_category": "Synthetic",
        "duration_seconds": int(round(duration)),
        "original_json_filename": f"{video_id}.json",
        "original_video_filename": f"{video_id}.mp4",
        "resolution": f"{spec.width}x{spec.height}",
        "text_to_speech": "",
        "content_metadata": {
            "title": f"Shapes on {colours}",
            "description": f"A shape moves over backgrounds that change colour: {colours}.",
            "fps": float(spec.fps),
            "characterList": [{"characterId": "shape", "name": "shape", "description": "A moving geometric shape."}],
            "qAndA": [{"question": "What colour is the first background?", "answer": scenes[0].colour}],
            "storylines": {
                "description": "The background colour changes from scene to scene.",
                "scenes": list(range(1, len(scenes) + 1)),
                "climax": {"description": "The last background appears.", "timestamp": ts(scenes[-1].start)},
            },
            "trimmingSuggestions": [
                {"description": "Keep the whole video.", "timestamps": span(0.0, duration)}
            ],
            "scenes": scene_rows,
        },
    }


def _timestamps_type() -> pa.DataType:
    return pa.struct([("start_timestamp", pa.string()), ("end_timestamp", pa.string())])


def finevideo_arrow_schema() -> pa.Schema:
    """FineVideo's parquet schema: ``mp4`` bytes and the ``json`` struct."""
    stamps = _timestamps_type()
    scene = pa.struct(
        [
            ("sceneId", pa.int64()),
            ("title", pa.string()),
            ("timestamps", stamps),
            ("cast", pa.list_(pa.string())),
            ("activities", pa.list_(pa.struct([("description", pa.string()), ("timestamp", stamps)]))),
            ("props", pa.list_(pa.struct([("name", pa.string()), ("timestamp", stamps)]))),
            ("videoEditingDetails", pa.list_(pa.struct([("description", pa.string()), ("timestamps", stamps)]))),
            (
                "mood",
                pa.struct(
                    [
                        ("description", pa.string()),
                        ("keyMoments", pa.list_(pa.struct([("timestamp", pa.string()), ("changeDescription", pa.string())]))),
                    ]
                ),
            ),
            ("narrativeProgression", pa.list_(pa.struct([("description", pa.string()), ("timestamp", pa.string())]))),
            ("characterInteraction", pa.list_(pa.struct([("characters", pa.list_(pa.string())), ("description", pa.string())]))),
            ("thematicElements", pa.string()),
            ("contextualRelevance", pa.string()),
            ("dynamismScore", pa.float64()),
            ("audioVisualCorrelation", pa.float64()),
        ]
    )
    metadata = pa.struct(
        [
            ("title", pa.string()),
            ("description", pa.string()),
            ("fps", pa.float64()),
            ("characterList", pa.list_(pa.struct([("characterId", pa.string()), ("name", pa.string()), ("description", pa.string())]))),
            ("qAndA", pa.list_(pa.struct([("question", pa.string()), ("answer", pa.string())]))),
            (
                "storylines",
                pa.struct(
                    [
                        ("description", pa.string()),
                        ("scenes", pa.list_(pa.int64())),
                        ("climax", pa.struct([("description", pa.string()), ("timestamp", pa.string())])),
                    ]
                ),
            ),
            ("trimmingSuggestions", pa.list_(pa.struct([("description", pa.string()), ("timestamps", stamps)]))),
            ("scenes", pa.list_(scene)),
        ]
    )
    annotation = pa.struct(
        [
            ("content_fine_category", pa.string()),
            ("content_parent_category", pa.string()),
            ("duration_seconds", pa.int64()),
            ("original_json_filename", pa.string()),
            ("original_video_filename", pa.string()),
            ("resolution", pa.string()),
            ("text_to_speech", pa.string()),
            ("content_metadata", metadata),
        ]
    )
    return pa.schema([("mp4", pa.binary()), ("json", annotation)])


def make_video(video_id: str, seed: int, spec: SampleSpec) -> tuple[bytes, dict]:
    """The mp4 bytes and the FineVideo ``json`` of one synthetic video."""
    rng = stable_rng(seed, video_id)
    scenes = _plan_scenes(rng, spec)
    duration = scenes[-1].end
    frame_count = int(round(duration * spec.fps))
    texture = Texture(rng, spec.width, spec.height) if spec.textured else None

    def frames():
        for k in range(frame_count):
            t = k / spec.fps
            scene = next((s for s in scenes if t < s.end), scenes[-1])
            yield _draw(scene, t, spec, texture, k)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "video.mp4"
        encode_video(frames(), path, spec.fps, preset=spec.encoder_preset, keyframe_interval=2 * spec.fps)
        data = path.read_bytes()
    return data, _annotation(video_id, scenes, spec, duration)


def sample_video_id(seed: int, index: int) -> str:
    return f"tw{seed:03d}v{index:05d}"


def write_shard(rows: list[tuple[bytes, dict]], path: Path, row_group_size: int) -> None:
    """One parquet shard of (mp4 bytes, json) rows in FineVideo's schema."""
    table = pa.Table.from_pylist(
        [{"mp4": mp4, "json": annotation} for mp4, annotation in rows], schema=finevideo_arrow_schema()
    )
    pq.write_table(table, path, row_group_size=row_group_size)


def make_sample(out_dir: str | Path, videos: int, seed: int = 0, spec: SampleSpec | None = None) -> list[Path]:
    """Write ``out_dir/data/train-XXXXX-of-YYYYY.parquet`` shards; return their paths."""
    spec = spec or SampleSpec()
    if videos < 1:
        raise ValueError("videos must be at least 1")
    data_dir = Path(out_dir) / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    shard_count = -(-videos // spec.rows_per_shard)
    paths: list[Path] = []
    progress = tqdm(total=videos, desc="sample videos", unit="video")
    for shard in range(shard_count):
        rows = []
        for index in range(shard * spec.rows_per_shard, min(videos, (shard + 1) * spec.rows_per_shard)):
            rows.append(make_video(sample_video_id(seed, index), seed, spec))
            progress.update()
        path = data_dir / f"train-{shard:05d}-of-{shard_count:05d}.parquet"
        write_shard(rows, path, spec.row_group_size)
        paths.append(path)
    progress.close()
    return paths

"""The workload of benchmarks/bench_dpo.py: a random-weight Qwen2-VL checkpoint (tiny, or at
Qwen2-VL-2B's shapes) and synthetic video preference pairs, as rows for TRL's
frames-as-images path and for our video collator (whose frames are read from a prepared
corpus written here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from timewarp.data.corpus import PreparedVideo, VideoCorpus
from timewarp.models.qwen2_vl import QwenVLFamily, family
from timewarp.data.scenes import SceneSpan
from timewarp.models.frames import select_frames

# -- model -----------------------------------------------------------------------------------

#: Qwen/Qwen2-VL-2B-Instruct's config.json: Qwen2-1.5B's language model and the ~0.67B-parameter
#: vision tower all Qwen2-VL sizes share (its merger projects to the LM's width, 1536). 2.21B in all.
QWEN2_VL_2B_TEXT: dict[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "initializer_range": 0.02,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
}
QWEN2_VL_2B_VISION: dict[str, Any] = {
    "depth": 32,
    "embed_dim": 1280,
    "hidden_size": 1536,
    "mlp_ratio": 4,
    "num_heads": 16,
    "in_channels": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
}


class Qwen2VL2BShapes(QwenVLFamily):
    """``make_tiny`` at Qwen2-VL-2B-Instruct's dimensions: same tiny trained tokenizer (its
    special-token ids), same real processor classes, the released model's config shapes with
    random weights. The embedding keeps the released 151936 rows although the tokenizer only
    uses a few hundred ids, so embedding and LM-head costs are the real model's."""

    @staticmethod
    def _tiny_text_config(spec: Any, vocab_size: int, ids: dict[str, int]) -> dict[str, Any]:
        return {**QwenVLFamily._tiny_text_config(spec, vocab_size, ids), **QWEN2_VL_2B_TEXT}

    @staticmethod
    def _tiny_vision_config(spec: Any) -> dict[str, Any]:
        return dict(QWEN2_VL_2B_VISION)


def make_model(size: str, folder: Path) -> Path:
    """A random-weight Qwen2-VL checkpoint (model, tokenizer, processor) in ``folder``."""
    maker = family if size == "tiny" else Qwen2VL2BShapes()  # not registered: only writes files
    return maker.make_tiny(folder, seed=0)


# -- data ------------------------------------------------------------------------------------

_SCENES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("a red car drives slowly along a wet street", (200, 40, 40)),
    ("a man in a blue jacket opens the front door", (40, 60, 200)),
    ("two children play football on a green field", (40, 170, 60)),
    ("a yellow taxi stops at the corner to pick someone up", (220, 200, 40)),
    ("a woman pours coffee into a white cup in the kitchen", (230, 230, 230)),
    ("an orange sunset fades behind the hills", (240, 140, 30)),
    ("a purple kite rises over the beach in the wind", (140, 60, 180)),
    ("a grey cat jumps from the sofa onto the table", (120, 120, 120)),
)
QUESTION = "Describe what happens in this video, in the order it happens."


@dataclass(frozen=True)
class Pair:
    video_id: str
    frames: np.ndarray  # (T, H, W, 3) uint8, true order
    prompt: str
    chosen: str  # scenes narrated in true order
    rejected: str  # the same scenes in a shuffled order (TimeWarp's negative)


def _narrate(captions: list[str]) -> str:
    steps = ["First, ", "Then, ", "After that, ", "Finally, "]
    prefixes = steps[: len(captions) - 1] + ["Finally, "]
    return " ".join(f"{prefix}{caption}." for prefix, caption in zip(prefixes, captions))


def make_pairs(count: int, frames: int, height: int, width: int, seed: int = 0) -> list[Pair]:
    """``count`` pairs, one video each: 3-4 coloured scenes with texture and noise (so the PNGs
    are not trivially small), frames split evenly over the scenes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    pairs = []
    for index in range(count):
        scene_ids = rng.choice(len(_SCENES), size=int(rng.integers(3, 5)), replace=False)
        order = rng.permutation(len(scene_ids))
        while len(scene_ids) > 1 and (order == np.arange(len(scene_ids))).all():
            order = rng.permutation(len(scene_ids))
        video = np.empty((frames, height, width, 3), dtype=np.uint8)
        for f in range(frames):
            _, colour = _SCENES[scene_ids[f * len(scene_ids) // frames]]
            texture = 25 * np.sin((xx + 7 * f) / 9.0)[..., None] * np.cos(yy / 13.0)[..., None]
            noise = rng.normal(0.0, 12.0, size=(height, width, 3))
            video[f] = np.clip(np.asarray(colour) + texture + noise, 0, 255).astype(np.uint8)
        captions = [_SCENES[i][0] for i in scene_ids]
        pairs.append(
            Pair(
                video_id=f"bench{index:05d}",
                frames=video,
                prompt=QUESTION,
                chosen=_narrate(captions),
                rejected=_narrate([captions[i] for i in order]),
            )
        )
    return pairs


def write_corpus(pairs: list[Pair], root: Path, fps: float = 2.0) -> VideoCorpus:
    """The pairs' videos as a prepared corpus (``frames/<id>/NN.png``, as prepare_corpus writes
    them), so our path reads and decodes frames the way training does."""
    videos = []
    for row, pair in enumerate(pairs):
        folder = root / "frames" / pair.video_id
        folder.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(pair.frames):
            Image.fromarray(frame).save(folder / f"{i:02d}.png", compress_level=1)
        count = len(pair.frames)
        height, width = pair.frames.shape[1:3]
        videos.append(
            PreparedVideo(
                video_id=pair.video_id,
                shard="bench",
                row=row,
                annotation_filename=f"{pair.video_id}.json",
                duration=count / fps,
                fps=fps,
                width=width,
                height=height,
                scenes=[SceneSpan(0, 0.0, count / fps, pair.chosen)],
                permutation=[0],
                frame_scene=[0] * count,
                frame_times=[i / fps for i in range(count)],
            )
        )
    return VideoCorpus(root=root, videos=videos, rows_read=len(videos))


def trl_rows(pairs: list[Pair], images_per_video: int) -> list[dict[str, Any]]:
    """Rows for TRL's vision path: conversational texts plus ``images_per_video`` of each
    video's frames (spread evenly, first and last kept, as ``frames_per_video`` samples them)
    as PIL images; TRL inserts one image placeholder per image before the user's text."""
    return [
        {
            "images": [Image.fromarray(frame) for frame in select_frames(pair.frames, images_per_video)],
            "prompt": [{"role": "user", "content": pair.prompt}],
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}],
        }
        for pair in pairs
    ]


def our_rows(pairs: list[Pair]) -> list[dict[str, Any]]:
    """Rows as ``preference_rows`` makes them (ids and texts; frames read per batch)."""
    return [
        {
            "id": f"pair-{p.video_id}",
            "video_id": p.video_id,
            "prompt": p.prompt,
            "chosen": p.chosen,
            "rejected": p.rejected,
        }
        for p in pairs
    ]

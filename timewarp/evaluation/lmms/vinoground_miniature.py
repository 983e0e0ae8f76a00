"""A generated Vinoground miniature in the layout lmms-eval 0.7.3's ``vinoground`` task reads.

- ``README.md`` whose YAML ``configs`` give the default config one split, ``lmmseval``,
  read from ``vinoground_lmmseval.csv`` (the hub's file name is unverified; the README names
  it, so any name resolves the same): rows ``index`` (``"<group>_<pos|neg>_<text|video>"``),
  ``major``, ``minor``, ``pos_cap``, ``neg_cap``.
- ``vinoground_videos.zip``: ``vinoground_videos/<group>_<pos|neg>.mp4`` and
  ``vinoground_videos/vinoground_textscore.json``; ``vinoground_videos_concated.zip``:
  ``vinoground_videos_concated/<group>_<pos|neg>.mp4`` (one segment, 2 s black, the other)
  and ``vinoground_videos_concated/vinoground_videoscore.json``. A score file's items are
  ``{"idx": "0_pos", "video_name": ..., "question": "...\\nA. ...\\nB. ...", "GT": "A"}``.

Group ``g`` shows two colours: its pos video ``c1`` then ``c2`` ("red turns into blue"), its
neg video the reverse. Which option is right is fixed by ``g`` (:func:`answer_letters`), so a
rigged model's scores are exact.

This module must not import zenml.
"""

from __future__ import annotations

import csv
import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from timewarp.data.sample import PALETTE
from timewarp.data.video import encode_video
from timewarp.seeding import stable_rng

__all__ = ["answer_letters", "write_vinoground_miniature"]

_FPS = 4
_SIZE = 32
_SCENE_FRAMES = 4
#: The black gap between a concatenated video's segments (2 s, as Vinoground's).
_GAP_FRAMES = 2 * _FPS
_TEXT_QUESTION = "Which caption best describes this video?"
_VIDEO_QUESTION = (
    "Which video segment matches this caption? Note: The video contains two segments separated by a "
    "2-second black frame.\nCaption: {caption}"
)


def answer_letters(group: int) -> dict[tuple[str, str], str]:
    """(question type, ``pos``/``neg``) -> the right letter in group ``group``: text items
    alternate with the group, video items run through all four (A,A), (A,B), (B,A), (B,B)."""
    text = "A" if group % 2 == 0 else "B"
    return {
        ("text", "pos"): text,
        ("text", "neg"): "B" if text == "A" else "A",
        ("video", "pos"): "A" if group % 4 in (0, 1) else "B",
        ("video", "neg"): "A" if group % 4 in (0, 2) else "B",
    }


def _encode(colours: list[str | None]) -> bytes:
    """An mp4 of one scene per colour (``None``: the black gap)."""
    frames = []
    for colour in colours:
        rgb = PALETTE[colour] if colour else (0, 0, 0)
        count = _SCENE_FRAMES if colour else _GAP_FRAMES
        frames += [np.full((_SIZE, _SIZE, 3), rgb, dtype=np.uint8)] * count
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "video.mp4"
        encode_video(iter(frames), path, _FPS)
        return path.read_bytes()


def _options(right: str, wrong: str, letter: str) -> str:
    first, second = (right, wrong) if letter == "A" else (wrong, right)
    return f"A. {first}\nB. {second}"


def write_vinoground_miniature(root: str | Path, *, groups: int = 4, seed: int = 0) -> list[dict[str, str]]:
    """Write ``groups`` counterfactual groups under ``root`` (module docstring). Returns the
    rows written, in order."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    text_items, video_items = [], []
    with (
        zipfile.ZipFile(root / "vinoground_videos.zip", "w") as videos,
        zipfile.ZipFile(root / "vinoground_videos_concated.zip", "w") as concated,
    ):
        for group in range(groups):
            first, second = (str(c) for c in stable_rng(seed, "vinoground", group).choice(list(PALETTE), 2, False))
            scenes = {"pos": [first, second], "neg": [second, first]}
            captions = {side: f"{a} turns into {b}" for side, (a, b) in scenes.items()}
            letters = answer_letters(group)
            for side, other in (("pos", "neg"), ("neg", "pos")):
                idx = f"{group}_{side}"
                videos.writestr(f"vinoground_videos/{idx}.mp4", _encode(scenes[side]))
                text_items.append({
                    "idx": idx,
                    "video_name": f"vinoground_videos/{idx}.mp4",
                    "question": f"{_TEXT_QUESTION}\n{_options(captions[side], captions[other], letters['text', side])}",
                    "GT": letters["text", side],
                })
                right, wrong = scenes[side], scenes[other]
                segments = (right, wrong) if letters["video", side] == "A" else (wrong, right)
                concated.writestr(f"vinoground_videos_concated/{idx}.mp4", _encode([*segments[0], None, *segments[1]]))
                video_items.append({
                    "idx": idx,
                    "video_name": f"vinoground_videos_concated/{idx}.mp4",
                    "question": f"{_VIDEO_QUESTION.format(caption=captions[side])}\nA. First\nB. Second",
                    "GT": letters["video", side],
                })
            for side in ("pos", "neg"):
                for kind in ("text", "video"):
                    rows.append({
                        "index": f"{group}_{side}_{kind}",
                        "major": "object",
                        "minor": "order",
                        "pos_cap": captions["pos"],
                        "neg_cap": captions["neg"],
                    })
        videos.writestr("vinoground_videos/vinoground_textscore.json", json.dumps(text_items, indent=1))
        concated.writestr("vinoground_videos_concated/vinoground_videoscore.json", json.dumps(video_items, indent=1))
    with open(root / "vinoground_lmmseval.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (root / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: lmmseval\n"
        "    path: vinoground_lmmseval.csv\n---\n\n"
        "# Vinoground miniature (generated by timewarp.evaluation.lmms.vinoground_miniature)\n"
    )
    return rows

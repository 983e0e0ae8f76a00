"""TimeWarp-Implicit pairs (timewarp.generation.implicit, .corruption) with a tiny
random-weight Qwen2-VL on a small generated corpus:

- corrupting frames leaves the input array and the stored PNG files byte-identical, keeps
  the frame shape and changes what the model is shown;
- corruption draws are seeded per (seed, video) and give each kind about half the videos;
- every pair has chosen != rejected, names an allowed corruption and keeps the stored
  frames intact; videos in = pairs + rejections; replies that say the same (or an empty
  one) become rejections;
- a second run takes every reply from the cache, and a model with other weights in the
  same folder takes none; a run that fails mid-way keeps its finished batches, and the
  next run generates only the rest.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from timewarp.data.corpus import VideoCorpus  # noqa: E402
from timewarp.data.ingest import list_shards  # noqa: E402
from timewarp.data.prepare import PrepareConfig, prepare_corpus  # noqa: E402
from timewarp.data.sample import make_sample  # noqa: E402
from timewarp.generation.corruption import (  # noqa: E402
    CORRUPTION_NAMES,
    ColourJitter,
    Corruption,
    apply_corruption,
    draw_corruption,
)
from timewarp.generation.implicit import (  # noqa: E402
    ImplicitConfig,
    ImplicitPrompts,
    generate_implicit_pairs,
    implicit_pair,
)
from timewarp.generation.records import GenerationRejection, PreferencePair  # noqa: E402
from timewarp.models.base import VideoSample  # noqa: E402
from timewarp.models.registry import family_by_name  # noqa: E402
from timewarp.text import normalise_text  # noqa: E402

VIDEOS = 6
STORED_FRAMES = 4
JITTER = ColourJitter(brightness=1.3, contrast=0.7, saturation=1.4, hue=0.1)
EVERY_CORRUPTION = [Corruption(d, j) for d in (False, True) for j in (None, JITTER)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> VideoCorpus:
    root = tmp_path_factory.mktemp("implicit-corpus")
    make_sample(root / "raw", videos=VIDEOS, seed=3)
    prepared, _ = prepare_corpus(
        list_shards(str(root / "raw")), root / "corpus", PrepareConfig(frames_per_video=STORED_FRAMES)
    )
    assert len(prepared) == VIDEOS
    return prepared


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Any, Path]:
    """(family, model, processor, folder) of a tiny Qwen2-VL."""
    family = family_by_name("qwen2_vl")
    folder = family.make_tiny(tmp_path_factory.mktemp("implicit-tiny"), seed=0)
    model, processor = family.load(str(folder))
    return family, model, processor, folder


@pytest.fixture(scope="module")
def seed(corpus: VideoCorpus) -> int:
    """A seed under which the corpus's videos draw every path: no corruption (imagined
    events), a downscale and a colour jitter."""
    for candidate in range(100):
        draws = [draw_corruption(candidate, video.video_id) for video in corpus.videos]
        if any(d.name == "none" for d in draws) and any(d.downscale for d in draws) and any(d.jitter for d in draws):
            return candidate
    raise AssertionError("no seed below 100 draws every corruption path for the sample videos")


def _file_hashes(corpus: VideoCorpus) -> dict[str, str]:
    return {
        str(path.relative_to(corpus.root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted((corpus.root / "frames").rglob("*"))
        if path.is_file()
    }


def _config(seed: int, cache_dir: Path, **overrides: Any) -> ImplicitConfig:
    values = {"frames_per_video": STORED_FRAMES, "max_new_tokens": 6, "batch_size": 3, "seed": seed}
    return ImplicitConfig(cache_dir=str(cache_dir), **{**values, **overrides})


def _ids(corpus: VideoCorpus) -> list[str]:
    return [video.video_id for video in corpus.videos]


# ---- corruption ------------------------------------------------------------------------------


def test_corruption_leaves_stored_frames_and_input_intact_and_changes_model_input(corpus, tiny) -> None:
    family, _, processor, _ = tiny
    stored = _file_hashes(corpus)
    assert len(stored) == VIDEOS * STORED_FRAMES
    frames = corpus.frames(corpus.videos[0])
    before = frames.copy()
    clean_pixels = family.encode(processor, [VideoSample(frames, "q")])["pixel_values_videos"]
    for corruption in EVERY_CORRUPTION:
        corrupted = apply_corruption(frames, corruption)
        assert np.array_equal(frames, before), f"{corruption.name} wrote into its input"
        assert corrupted.shape == frames.shape and corrupted.dtype == np.uint8
        assert not np.shares_memory(corrupted, frames)
        if corruption.name == "none":
            assert np.array_equal(corrupted, frames)
            continue
        assert not np.array_equal(corrupted, frames), corruption.name
        pixels = family.encode(processor, [VideoSample(corrupted, "q")])["pixel_values_videos"]
        assert pixels.shape == clean_pixels.shape and not torch.equal(pixels, clean_pixels), corruption.name
    assert _file_hashes(corpus) == stored


def test_downscale_keeps_only_20px_of_detail() -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(2, 64, 96, 3), dtype=np.uint8)
    blurred = apply_corruption(noise, Corruption(downscale=True, jitter=None))
    # Random pixels have no structure at 20 px: neighbours become alike.
    assert np.abs(np.diff(blurred.astype(int), axis=2)).mean() < 0.5 * np.abs(np.diff(noise.astype(int), axis=2)).mean()


def test_corruption_draws_are_seeded_and_balanced() -> None:
    ids = [f"video-{k:03d}" for k in range(64)]
    draws = [draw_corruption(7, v) for v in ids]
    assert draws == [draw_corruption(7, v) for v in ids]
    assert draws != [draw_corruption(8, v) for v in ids]
    assert {d.name for d in draws} == set(CORRUPTION_NAMES)
    for kind in (sum(d.downscale for d in draws), sum(d.jitter is not None for d in draws)):
        assert 20 <= kind <= 44, f"{kind} of 64 videos, expected about half"
    for d in draws:
        if d.jitter is not None:  # never a near-identity jitter
            assert all(abs(f - 1) >= 0.2 for f in (d.jitter.brightness, d.jitter.contrast, d.jitter.saturation))


# ---- pairing -----------------------------------------------------------------------------------


def test_identical_or_empty_replies_become_rejections() -> None:
    same = implicit_pair("v1", "prompt", "A dog runs, then sits.", "a dog runs then SITS!", "colour_jitter")
    assert isinstance(same, GenerationRejection) and "say the same" in same.reason
    assert "A dog runs" in same.reply_text and same.video_id == "v1"
    empty = implicit_pair("v1", "prompt", "A dog runs.", " ... ", "none")
    assert isinstance(empty, GenerationRejection) and "empty rejected" in empty.reason
    pair = implicit_pair("v1", "prompt", " A dog runs. ", "A cat sleeps.", "downscale_20px")
    assert isinstance(pair, PreferencePair)
    assert (pair.id, pair.chosen, pair.rejected, pair.corruption) == ("v1-implicit", "A dog runs.", "A cat sleeps.",
                                                                      "downscale_20px")
    assert (pair.source, pair.question_type, pair.permutation) == ("timewarp-implicit", "implicit", [])


# ---- generation ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def first_run(corpus, tiny, seed, tmp_path_factory):
    family, model, processor, _ = tiny
    cache_dir = tmp_path_factory.mktemp("implicit-cache")
    stored = _file_hashes(corpus)
    dataset, log = generate_implicit_pairs(model, processor, family, corpus, _ids(corpus), _config(seed, cache_dir))
    assert _file_hashes(corpus) == stored, "generation wrote to the stored frames"
    return dataset, log, cache_dir


def test_pairs_differ_and_name_their_corruption(corpus, seed, first_run) -> None:
    dataset, log, _ = first_run
    assert len(dataset.pairs) + len(log.rejections) == VIDEOS
    assert len(dataset.pairs) >= VIDEOS - 1, [r.reason for r in log.rejections]
    detailed = ImplicitPrompts.load("v1").detailed
    for pair in dataset.pairs:
        assert pair.chosen and pair.rejected and normalise_text(pair.chosen) != normalise_text(pair.rejected)
        assert pair.corruption in CORRUPTION_NAMES
        assert pair.corruption == draw_corruption(seed, pair.video_id).name
        assert (pair.id, pair.question, pair.source) == (f"{pair.video_id}-implicit", detailed, "timewarp-implicit")
    assert {draw_corruption(seed, p.video_id).name for p in dataset.pairs} & {"none"}, "the imagined-events path ran"
    assert dataset.media_root == str(corpus.root)
    counts = dataset.generator["counts"]
    assert (counts["requests"], counts["generated"], counts["cache_hits"]) == (2 * VIDEOS, 2 * VIDEOS, 0)
    assert dataset.generator["model_fingerprint"] and dataset.generator["prompt_version"] == "v1"


def test_second_run_takes_every_reply_from_the_cache(corpus, tiny, seed, first_run) -> None:
    family, model, processor, _ = tiny
    dataset, log, cache_dir = first_run
    again, again_log = generate_implicit_pairs(model, processor, family, corpus, _ids(corpus), _config(seed, cache_dir))
    counts = again.generator["counts"]
    assert (counts["generated"], counts["cache_hits"]) == (0, 2 * VIDEOS)
    assert again.pairs == dataset.pairs and again_log.rejections == log.rejections


def test_other_weights_in_the_same_folder_get_no_cached_replies(corpus, tiny, seed, first_run) -> None:
    family, _, _, folder = tiny
    _, _, cache_dir = first_run
    family.make_tiny(folder, seed=1)  # retrained in place: same path, other weights
    model, processor = family.load(str(folder))
    retrained, _ = generate_implicit_pairs(model, processor, family, corpus, _ids(corpus)[:2], _config(seed, cache_dir))
    assert retrained.generator["counts"]["cache_hits"] == 0


class _FailsOnSecondBatch:
    """The model, except that its second ``generate`` call dies (a killed run)."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def generate(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("killed in the second batch")
        return self._model.generate(**kwargs)


def test_failed_run_resumes_from_its_cached_batches(corpus, tiny, seed, first_run, tmp_path) -> None:
    family, model, processor, _ = tiny
    dataset, _, _ = first_run
    config = _config(seed, tmp_path / "cache")
    failing = _FailsOnSecondBatch(model)
    with pytest.raises(RuntimeError, match="second batch"):
        generate_implicit_pairs(failing, processor, family, corpus, _ids(corpus), config)
    resumed, _ = generate_implicit_pairs(model, processor, family, corpus, _ids(corpus), config)
    counts = resumed.generator["counts"]
    assert (counts["cache_hits"], counts["generated"]) == (config.batch_size, 2 * VIDEOS - config.batch_size)
    assert resumed.pairs == dataset.pairs


def test_unknown_or_repeated_videos_are_refused(corpus, tiny, tmp_path) -> None:
    family, model, processor, _ = tiny
    with pytest.raises(KeyError, match="not in the corpus"):
        generate_implicit_pairs(model, processor, family, corpus, ["no-such-video"], _config(0, tmp_path))
    first = _ids(corpus)[0]
    with pytest.raises(ValueError, match="more than once"):
        generate_implicit_pairs(model, processor, family, corpus, [first, first], _config(0, tmp_path))

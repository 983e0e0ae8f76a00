import copy
import os
from dataclasses import asdict

import numpy as np
import pytest

from timewarp.data.ingest import list_shards
from timewarp.data.prepare import PrepareConfig, machine_cores, merge_corpora, prepare_corpus
from timewarp.data.corpus import VideoCorpus
from timewarp.data.sample import SampleSpec, make_sample
from helpers import background_colour, caption_colour, good_row, with_id, write_rows


def _shift_times(annotation: dict, seconds: float) -> dict:
    from timewarp.data.finevideo import format_timestamp, parse_timestamp

    annotation = copy.deepcopy(annotation)
    for scene in annotation["content_metadata"]["scenes"]:
        for activity in scene["activities"]:
            stamps = activity["timestamp"]
            for key in ("start_timestamp", "end_timestamp"):
                stamps[key] = format_timestamp(parse_timestamp(stamps[key]) + seconds)
    return annotation


def _audio_only_mp4(tmp_path) -> bytes:
    import av

    path = tmp_path / "audio.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    return path.read_bytes()


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """Two shards mixing good rows with every kind of bad input; expected outcome per row."""
    tmp = tmp_path_factory.mktemp("messy")
    base = good_row("base", seed=1)
    mp4, annotation = base

    def named(video_id, row=base):
        return with_id(row, video_id)

    single_scene = copy.deepcopy(annotation)
    single_scene["content_metadata"]["scenes"] = single_scene["content_metadata"]["scenes"][:1]
    reversed_all = copy.deepcopy(annotation)
    for scene in reversed_all["content_metadata"]["scenes"]:
        first, last = scene["activities"][0]["timestamp"], scene["activities"][-1]["timestamp"]
        first["start_timestamp"], last["end_timestamp"] = last["end_timestamp"], first["start_timestamp"]
    bad_stamp = copy.deepcopy(annotation)
    bad_stamp["content_metadata"]["scenes"][1]["activities"][0]["timestamp"]["start_timestamp"] = "12 seconds"
    missing = copy.deepcopy(annotation)
    del missing["content_metadata"]["scenes"]

    cases = [
        (named("good1"), "accepted"),
        (with_id((mp4[: len(mp4) // 2], annotation), "truncated"), "video"),
        (with_id((b"", annotation), "empty"), "video"),
        (with_id((b"GIF89a" + b"\x00" * 2000, annotation), "garbage"), "video"),
        (with_id((_audio_only_mp4(tmp), annotation), "audioonly"), "video"),
        (named("badstamp", (mp4, bad_stamp)), "scenes"),
        (named("reversed", (mp4, reversed_all)), "scenes"),
        (named("pastend", (mp4, _shift_times(annotation, 40.0))), "video"),
        (named("onescene", (mp4, single_scene)), "scenes"),
        (named("missing", (mp4, missing)), "schema"),
        ((mp4, None), "schema"),
        (with_id(base, "../escape"), "schema"),
        ((mp4, {**annotation, "original_video_filename": "/tmp/abs.mp4"}), "schema"),
        ((mp4, {**annotation, "original_video_filename": "..\\\\win.mp4"}), "schema"),
        (named("good2", good_row("good2", seed=2)), "accepted"),
        (named("good1", good_row("other", seed=3)), "duplicate"),  # same shard
    ]
    second_shard = [(named("good3", good_row("good3", seed=4)), "accepted"), (named("good2"), "duplicate")]
    root = write_rows(tmp / "src", [[row for row, _ in cases], [row for row, _ in second_shard]])
    return root, [outcome for _, outcome in cases + second_shard]


def test_every_row_is_accepted_or_rejected_with_a_reason(messy, tmp_path):
    root, expected = messy
    out = tmp_path / "nested" / "corpus"
    before = set(os.listdir(tmp_path))
    corpus, log = prepare_corpus(list_shards(str(root)), out, PrepareConfig())
    assert corpus.rows_read == len(expected) == len(corpus) + len(log)
    assert sorted(v.video_id for v in corpus.videos) == ["good1", "good2", "good3"]
    outcomes = {(r.shard.endswith("00000-of-00002.parquet"), r.row): r.stage for r in log.rejections}
    got = [outcomes.get((True, i), "accepted") for i in range(len(expected) - 2)]
    got += [outcomes.get((False, i), "accepted") for i in range(2)]
    assert got == expected
    reasons = " | ".join(r.reason for r in log.rejections)
    for fragment in ("empty", "cannot open", "no video stream", "unparseable timestamp",
                     "reversed", "past the video's duration", "fewer than min_scenes", "scenes", "json column is empty",
                     "not a plain file name", "is a path", "already taken by"):
        assert fragment in reasons
    # Nothing outside the output folder; only accepted videos inside it.
    assert set(os.listdir(tmp_path)) == before | {"nested"}
    assert os.listdir(tmp_path / "nested") == ["corpus"]
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["good1.mp4", "good2.mp4", "good3.mp4"]
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["good1", "good2", "good3"]
    assert not (out / ".staging").exists()
    assert not (tmp_path / "escape.mp4").exists() and not os.path.exists("/tmp/abs.mp4")


def test_frames_follow_true_and_shuffled_scene_order(sample_root, tmp_path):
    corpus, log = prepare_corpus(list_shards(str(sample_root)), tmp_path / "c", PrepareConfig(frames_per_video=8))
    assert len(log) == 0 and len(corpus) == 12
    for video in corpus.videos:
        colours = [background_colour(f) for f in corpus.frames(video)]
        assert colours == [caption_colour(video.scenes[s].caption) for s in video.frame_scene]
        shuffled = [background_colour(f) for f in corpus.shuffled_frames(video)]
        expected = [caption_colour(s.caption) for s in video.shuffled_scenes]
        # Each scene's frames, scenes in permuted order.
        assert [c for i, c in enumerate(shuffled) if i == 0 or shuffled[i - 1] != c] == expected
        assert video.shuffled_combined_captions.split(". ")[0] in video.shuffled_scenes[0].caption


def test_round_trip_through_the_manifest(sample_root, tmp_path):
    corpus, _ = prepare_corpus(list_shards(str(sample_root)), tmp_path / "c", PrepareConfig(), max_videos=5)
    again = VideoCorpus.read(tmp_path / "c")
    assert [asdict(v) for v in again.videos] == [asdict(v) for v in corpus.videos]
    assert again.rows_read == 5


def test_workers_and_shard_groups_do_not_change_the_result(sample_root, tmp_path):
    shards = list_shards(str(sample_root))
    config = PrepareConfig(seed=5)
    serial, _ = prepare_corpus(shards, tmp_path / "serial", config, max_videos=10, workers=1)
    pooled, _ = prepare_corpus(shards, tmp_path / "pooled", config, max_videos=10, workers=2)
    per_core, _ = prepare_corpus(shards, tmp_path / "per_core", config, max_videos=10)  # the default
    parts = [prepare_corpus(shards, tmp_path / f"g{g}", config, max_videos=10, group=g, groups=2) for g in range(2)]
    merged, merged_log = merge_corpora(parts, tmp_path / "merged")
    assert [asdict(v) for v in pooled.videos] == [asdict(v) for v in serial.videos]
    assert [asdict(v) for v in per_core.videos] == [asdict(v) for v in serial.videos]
    assert [asdict(v) for v in merged.videos] == [asdict(v) for v in serial.videos]
    assert merged.rows_read == 10 and len(merged_log) == 0
    for video in merged.videos:
        assert np.array_equal(merged.frames(video), serial.frames(video))
        # Merging links the parts' media (same file system) instead of copying every byte.
        part = next(corpus for corpus, _ in parts if video in corpus.videos)
        assert all(os.path.samefile(merged.path(f), part.path(f)) for f in video.media_files)


def test_workers_default_to_the_cores_and_bad_counts_are_refused(sample_root, tmp_path):
    assert 1 <= machine_cores() <= (os.cpu_count() or 1)
    with pytest.raises(ValueError, match="workers must be at least 1"):
        prepare_corpus(list_shards(str(sample_root)), tmp_path / "out", PrepareConfig(), workers=0)


def test_duplicate_across_groups_keeps_the_first_row(tmp_path):
    row = good_row("dup", seed=9)
    root = write_rows(tmp_path / "src", [[row], [row]])
    shards = list_shards(str(root))
    parts = [prepare_corpus(shards, tmp_path / f"g{g}", PrepareConfig(), group=g, groups=2) for g in range(2)]
    merged, log = merge_corpora(parts, tmp_path / "merged")
    assert [(v.video_id, v.shard) for v in merged.videos] == [("dup", shards.shards[0].uri)]
    assert [(r.stage, r.shard, r.row) for r in log.rejections] == [("duplicate", shards.shards[1].uri, 0)]


def test_rendered_shuffled_video_plays_permuted_scenes(sample_root, tmp_path):
    from timewarp.data.video import read_frames

    corpus, _ = prepare_corpus(
        list_shards(str(sample_root)), tmp_path / "c", PrepareConfig(render_shuffled_videos=True), max_videos=2
    )
    for video in corpus.videos:
        clock, times = 0.0, []
        for scene in video.shuffled_scenes:
            times.append(clock + scene.duration / 2)
            clock += scene.duration
        frames = read_frames(corpus.path(video.shuffled_video_file), times, "pyav")
        assert [background_colour(f) for f in frames] == [caption_colour(s.caption) for s in video.shuffled_scenes]


def test_learnable_sample_gives_each_scene_one_pair_of_frames(tmp_path):
    spec = SampleSpec.preset("learnable")
    make_sample(tmp_path / "raw", videos=6, seed=3, spec=spec)
    corpus, log = prepare_corpus(list_shards(str(tmp_path / "raw")), tmp_path / "c", PrepareConfig(frames_per_video=8))
    assert len(log) == 0 and len(corpus) == 6
    for video in corpus.videos:
        frames = corpus.frames(video)
        assert frames.shape == (8, 56, 56, 3) and len(video.scenes) == 4
        # Frames 2k and 2k+1 (one Qwen2-VL temporal patch) show scene k, whose caption names its colour.
        assert [background_colour(f) for f in frames] == [
            caption_colour(s.caption) for s in video.scenes for _ in range(2)
        ]
        # Its first sentence, the event's name in questions and answers, is the colour alone.
        assert all(s.caption.split(". ")[0] == f"{caption_colour(s.caption).capitalize()} scene" for s in video.scenes)
    with pytest.raises(ValueError, match="unknown sample preset"):
        SampleSpec.preset("huge")

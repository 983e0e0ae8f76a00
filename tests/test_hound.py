"""LLaVA-Hound's DPO set: the reader (every line a pair or a reason), the miniature in its
layout, fsspec URIs, and hound corpora next to FineVideo ones."""

import json
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from timewarp.data.corpus import MANIFEST, VideoCorpus
from timewarp.data import hound
from timewarp.data.hound import read_hound_pairs, write_hound_miniature
from timewarp.data.ingest import list_shards
from timewarp.data.prepare import PrepareConfig, merge_corpora, prepare_corpus
from timewarp.data.sample import PALETTE, make_sample
from timewarp.text import normalise_text


@pytest.fixture(scope="module")
def miniature(tmp_path_factory) -> tuple[str, str]:
    return write_hound_miniature(tmp_path_factory.mktemp("hound"), videos=6, pairs_per_video=2, seed=3)


def _lines(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_miniature_round_trips_through_the_reader(miniature, tmp_path, monkeypatch):
    monkeypatch.setattr(hound, "_BATCH_LINES", 5)  # several batches, one cut mid-video
    records_path, frames_root = miniature
    assert Path(records_path).name == "sft_dpo_17k.jsonl"
    written = sorted(p.name for p in (Path(frames_root) / "hound_0000").iterdir())
    assert written == [f"c{i:02d}.jpg" for i in range(1, 9)]
    records = _lines(records_path)
    assert len(records) == 12 and {r["chosen_score"] for r in records} == {5.0}
    corpus, pairs, log = read_hound_pairs(records_path, frames_root, tmp_path / "out", frames_per_video=4)

    assert len(log) == 0 and corpus.rows_read == 12 and len(corpus) == 6
    assert [(p.id, p.video_id, p.question, p.chosen, p.rejected) for p in pairs.pairs] == [
        (r["id"], r["video"], r["prompt"], r["chosen"], r["rejected"]) for r in records]
    assert all(p.source == "llava-hound" and p.corruption == "" and p.question_type == "llava_hound"
               for p in pairs.pairs)
    assert all(normalise_text(p.chosen) != normalise_text(p.rejected) for p in pairs.pairs)
    assert pairs.media_root == str(tmp_path / "out")
    assert pairs.generator == {"backend": "llava-hound", "records": records_path, "frames_root": frames_root}

    video = corpus.videos[0]
    assert (video.video_id, video.row, video.has_video, video.frame_times) == ("hound_0000", 0, False, [0, 1, 2, 3])
    assert sorted(p.name for p in (tmp_path / "out/frames/hound_0000").iterdir()) == [f"{i:02d}.png" for i in range(4)]
    assert not (tmp_path / "out/videos").exists()
    frames = corpus.frames(video)
    assert frames.shape == (4, 56, 56, 3)
    # The background (a corner pixel) is the colour the chosen colour answer names, within JPEG error.
    colour_pair = next(p for p in pairs.pairs if p.id.endswith("_colour"))
    colour_video = next(v for v in corpus.videos if v.video_id == colour_pair.video_id)
    named = PALETTE[colour_pair.chosen.split()[0].lower()]
    assert np.abs(corpus.frames(colour_video)[:, 1, 1].astype(int) - named).max() < 20
    # The manifest reads back the same.
    assert VideoCorpus.read(tmp_path / "out").videos == corpus.videos

    # The first N valid pairs, and no frames left for videos only later lines use.
    corpus, pairs, log = read_hound_pairs(records_path, frames_root, tmp_path / "first3", max_pairs=3)
    assert [p.id for p in pairs.pairs] == [r["id"] for r in records[:3]] and corpus.rows_read == 3
    assert sorted(p.name for p in (tmp_path / "first3/frames").iterdir()) == [v.video_id for v in corpus.videos]
    assert len(corpus.frames(corpus.videos[0])) == 8


def test_miniature_is_deterministic_for_a_seed(miniature, tmp_path):
    again, _ = write_hound_miniature(tmp_path, videos=6, pairs_per_video=2, seed=3)
    other, _ = write_hound_miniature(tmp_path / "other", videos=6, pairs_per_video=2, seed=4)
    assert _lines(again) == _lines(miniature[0]) != _lines(other)


def _record(pair_id: str, video: str, **fields) -> dict:
    return {"id": pair_id, "video": video, "prompt": "Which shape moves?", "answer": "The circle rises.",
            "chosen": "The circle rises.", "chosen_score": 5.0, "rejected": "The square rises.",
            "rejected_score": 1.0, **fields}


def test_every_bad_line_is_rejected_with_its_reason_and_good_pairs_are_kept(miniature, tmp_path):
    _, frames_root = miniature
    (Path(frames_root) / "empty_folder").mkdir(exist_ok=True)
    no_rejected = _record("m", "hound_0001")
    del no_rejected["rejected"]
    lines = [
        json.dumps(_record("a", "hound_0000")),
        "{not json",
        "[1, 2]",
        json.dumps(no_rejected),
        json.dumps(_record("t", "hound_0001", chosen=3)),
        json.dumps(_record("e", "hound_0001", prompt="  ")),
        json.dumps(_record("s", "hound_0001", chosen_score="high")),
        json.dumps(_record("b", "hound_0001", rejected_score=True)),
        json.dumps(_record("same", "hound_0001", rejected="the circle RISES")),
        json.dumps(_record("a", "hound_0001")),
        json.dumps(_record("u", "../hound_0001")),
        json.dumps(_record("g", "ghost")),
        json.dumps(_record("f", "empty_folder")),
        "",
        json.dumps(_record("c", "hound_0000", chosen_score=None, rejected_score=0)),
        json.dumps(_record("d", "hound_0002")),
    ]
    records = tmp_path / "records.jsonl"
    records.write_text("\n".join(lines) + "\n")
    corpus, pairs, log = read_hound_pairs(str(records), frames_root, tmp_path / "out")

    assert [p.id for p in pairs.pairs] == ["a", "c", "d"]
    assert [v.video_id for v in corpus.videos] == ["hound_0000", "hound_0002"]
    assert corpus.rows_read == len(lines) == len(pairs.pairs) + len(log)
    reasons = {r.row: (r.stage, r.video_id, r.reason) for r in log.rejections}
    expected = {
        1: "not JSON", 2: "not a JSON object but a JSON list", 3: "missing field(s) ['rejected']",
        4: "field 'chosen' must be a non-empty string, got 3 (int)", 5: "field 'prompt' must be a non-empty string",
        6: "field 'chosen_score' must be a finite number or null", 7: "field 'rejected_score' must be a finite number",
        8: "chosen and rejected are the same answer", 9: "duplicate pair id 'a'", 10: "unsafe video id",
        11: "frame folder", 12: "holds no image files", 13: "blank line",
    }
    assert set(reasons) == set(expected)
    for row, text in expected.items():
        assert text in reasons[row][2], (row, reasons[row])
    assert {row for row, (stage, _, _) in reasons.items() if stage == "hound_frames"} == {11, 12}
    assert reasons[11][2].endswith("ghost/ is missing") and reasons[3][1] == "hound_0001" and reasons[1][1] is None
    assert all(r.shard == str(records) for r in log.rejections)
    assert sorted(p.name for p in (tmp_path / "out/frames").iterdir()) == ["hound_0000", "hound_0002"]


def test_a_corrupt_frame_rejects_every_pair_of_its_video(tmp_path):
    records, frames_root = write_hound_miniature(tmp_path / "src", videos=3, pairs_per_video=3, seed=1)
    broken = Path(frames_root) / "hound_0001" / "c03.jpg"
    broken.write_bytes(broken.read_bytes()[:200])  # truncated JPEG: opens, fails to decode
    corpus, pairs, log = read_hound_pairs(records, frames_root, tmp_path / "out")

    assert [v.video_id for v in corpus.videos] == ["hound_0000", "hound_0002"]
    assert len(pairs.pairs) == 6 and len(log) == 3 and corpus.rows_read == 9
    assert {(r.video_id, r.stage, r.row) for r in log.rejections} == {
        ("hound_0001", "hound_frames", row) for row in (3, 4, 5)}
    assert all("hound_0001/c03.jpg cannot be decoded" in r.reason for r in log.rejections)
    assert not (tmp_path / "out/frames/hound_0001").exists()


def test_frames_are_taken_in_natural_name_order(tmp_path):
    folder = tmp_path / "frames" / "clip"
    folder.mkdir(parents=True)
    greys = list(range(0, 250, 25))  # c1 darkest ... c10 lightest: name order != string order
    for number, grey in enumerate(greys, start=1):
        Image.new("RGB", (16, 16), (grey,) * 3).save(folder / f"c{number}.png")
    (tmp_path / "r.jsonl").write_text(json.dumps(_record("p", "clip")) + "\n")
    corpus, _, _ = read_hound_pairs(str(tmp_path / "r.jsonl"), str(tmp_path / "frames"), tmp_path / "out",
                                    frames_per_video=10)
    assert corpus.frames(corpus.videos[0])[:, 0, 0, 0].tolist() == greys


def test_reads_through_fsspec_uris(miniature, tmp_path):
    records_path, frames_root = miniature
    local = read_hound_pairs(records_path, frames_root, tmp_path / "local")[1].pairs
    via_file = read_hound_pairs(f"file://{records_path}", f"file://{frames_root}", tmp_path / "file")
    assert via_file[1].pairs == local and len(via_file[0]) == 6

    memory = fsspec.filesystem("memory")
    base = f"/hound-{uuid.uuid4().hex}"
    try:
        memory.pipe(f"{base}/sft_dpo_17k.jsonl", Path(records_path).read_bytes())
        for image in Path(frames_root).rglob("*.jpg"):
            memory.pipe(f"{base}/frames/{image.parent.name}/{image.name}", image.read_bytes())
        corpus, pairs, log = read_hound_pairs(
            f"memory://{base}/sft_dpo_17k.jsonl", f"memory://{base}/frames", tmp_path / "memory")
        assert pairs.pairs == local and len(log) == 0
        assert np.array_equal(corpus.frames(corpus.videos[2]), via_file[0].frames(via_file[0].videos[2]))
    finally:
        memory.rm(base, recursive=True)


def test_hound_corpus_merges_with_a_finevideo_corpus_and_old_manifests_still_load(miniature, tmp_path):
    make_sample(tmp_path / "finevideo", videos=2, seed=5)
    fine, fine_log = prepare_corpus(list_shards(str(tmp_path / "finevideo")), tmp_path / "fine", PrepareConfig())
    hound, _, hound_log = read_hound_pairs(*miniature, tmp_path / "hound", frames_per_video=4)
    merged, _ = merge_corpora([(fine, fine_log), (hound, hound_log)], tmp_path / "merged")

    assert len(merged) == len(fine) + len(hound) == 8
    by_id = {v.video_id: v for v in VideoCorpus.read(tmp_path / "merged").videos}
    assert not by_id["hound_0000"].has_video and "videos/hound_0000.mp4" not in by_id["hound_0000"].media_files
    assert not (tmp_path / "merged/videos/hound_0000.mp4").exists()
    assert len(merged.frames(by_id["hound_0000"])) == 4
    fine_video = fine.videos[0]
    assert by_id[fine_video.video_id].has_video and (tmp_path / "merged" / fine_video.video_file).exists()

    # A manifest written before has_video existed: its videos all have an mp4.
    table = pq.read_table(tmp_path / "fine" / MANIFEST)
    pq.write_table(table.drop_columns(["has_video"]).replace_schema_metadata(table.schema.metadata),
                   tmp_path / "fine" / MANIFEST)
    old = VideoCorpus.read(tmp_path / "fine")
    assert old.videos == fine.videos and all(v.has_video for v in old.videos) and old.rows_read == fine.rows_read


def test_step_needs_both_locations_or_neither():
    from steps.data.load_hound_pairs import load_hound_pairs

    with pytest.raises(ValueError, match="go together"):
        load_hound_pairs.entrypoint("hf://datasets/x/sft_dpo_17k.jsonl", None, 8, None, 0)
    corpus, pairs, log = load_hound_pairs.entrypoint(None, None, 4, 5, 0)
    assert len(pairs.pairs) == 5 and len(log) == 0 and corpus.rows_read == 5
    assert {p.source for p in pairs.pairs} == {"llava-hound"} and len(corpus.frames(corpus.videos[0])) == 4

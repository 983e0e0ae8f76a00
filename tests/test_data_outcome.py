"""Errors a user can act on at the data stage: a mismatch in a FineVideo field the method
does not read is a counted warning, not a lost video; a field it reads still rejects the
row; a run where no row becomes a video fails where the corpus is merged, saying what
happened to the rows and what to do."""

from __future__ import annotations

import copy

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import good_row, with_id, write_rows

from timewarp.data.corpus import RejectionLog, VideoCorpus
from timewarp.data.ingest import list_shards
from timewarp.data.outcome import NoVideosError, outcome_lines, require_videos
from timewarp.data.prepare import PrepareConfig, merge_corpora, prepare_corpus
from timewarp.generation.splits import split_videos

DURATION = "duration_seconds: Input should be a valid integer, got a number with a fractional part"
MOOD = "content_metadata.scenes.*.mood.description: Input should be a valid string"  # null in the struct


@pytest.fixture(scope="module")
def base_row():
    return good_row("base", seed=1)


def _float_duration(row):
    mp4, annotation = row
    annotation = copy.deepcopy(annotation)
    annotation["duration_seconds"] = annotation["duration_seconds"] + 0.5
    return mp4, annotation


def _write_inferred(root, rows):
    """A FineVideo-format shard whose json struct types follow the rows (pyarrow infers
    them), as a shard written by another tool would: ``duration_seconds`` a double."""
    (root / "data").mkdir(parents=True)
    table = pa.Table.from_pylist([{"mp4": mp4, "json": annotation} for mp4, annotation in rows])
    pq.write_table(table, root / "data" / "train-00000-of-00001.parquet")
    return root


def test_unused_field_mismatches_are_counted_warnings_and_used_ones_reject(base_row, tmp_path):
    float_duration = [_float_duration(with_id(base_row, f"float{i}")) for i in range(2)]
    no_mood = copy.deepcopy(float_duration[1][1])
    for scene in no_mood["content_metadata"]["scenes"]:
        scene["mood"] = {"keyMoments": []}  # no description in any scene (null in the shard)
    float_duration[1] = (float_duration[1][0], no_mood)
    bad_caption = copy.deepcopy(_float_duration(with_id(base_row, "badcaption"))[1])
    bad_caption["content_metadata"]["scenes"][1]["activities"][0]["description"] = None  # read: the caption
    root = _write_inferred(tmp_path / "src", [*float_duration, (base_row[0], bad_caption)])
    assert pq.read_schema(root / "data" / "train-00000-of-00001.parquet").field("json").type.field(
        "duration_seconds").type == pa.float64()

    corpus, log = prepare_corpus(list_shards(str(root)), tmp_path / "corpus", PrepareConfig(), workers=1)

    assert sorted(v.video_id for v in corpus.videos) == ["float0", "float1"]
    assert corpus.rows_read == 3 == len(corpus) + len(log)
    [rejection] = log.rejections
    assert (rejection.video_id, rejection.stage) == (None, "schema")
    assert "content_metadata.scenes.1.activities.0.description: Input should be a valid string" in rejection.reason
    # Counted per field and reason (videos each), kept in the manifest, in the summary and the log lines.
    assert corpus.schema_warning_counts() == {DURATION: 2, MOOD: 1}
    assert VideoCorpus.read(corpus.root).schema_warning_counts() == {DURATION: 2, MOOD: 1}
    assert corpus.summary()["videos_with_schema_warnings"] == 2
    lines = outcome_lines(corpus, log)
    assert lines[0] == "data: 3 rows read -> 2 videos, 1 rejected (schema 1)"
    assert f"       2  {DURATION}" in lines and f"       1  {MOOD}" in lines


def test_the_generated_sample_matches_the_whole_documented_schema(sample_root, tmp_path):
    corpus, log = prepare_corpus(list_shards(str(sample_root)), tmp_path / "c", PrepareConfig(), max_videos=2, workers=1)
    assert len(corpus) == 2 and not log.rejections and corpus.schema_warning_counts() == {}


def test_no_surviving_video_fails_where_the_corpus_is_merged_saying_why(base_row, tmp_path):
    from steps.data.merge_corpus import merge_corpus

    mp4, annotation = base_row
    one_scene = copy.deepcopy(annotation)
    one_scene["content_metadata"]["scenes"] = one_scene["content_metadata"]["scenes"][:1]
    rows = [with_id((mp4, one_scene), f"short{i}") for i in range(6)] + [with_id((b"", annotation), "empty")]
    root = write_rows(tmp_path / "src", [rows[:4], rows[4:]])
    shards = list_shards(str(root))
    parts = [prepare_corpus(shards, tmp_path / f"g{g}", PrepareConfig(), group=g, groups=2, workers=1)
             for g in range(2)]
    corpus, log = merge_corpora(parts, tmp_path / "merged")
    assert len(corpus) == 0 and corpus.rows_read == 7 == len(log)

    with pytest.raises(NoVideosError) as raised:
        require_videos(corpus, log)
    message = str(raised.value)
    assert message.startswith("no video survived data preparation: 7 rows read, 0 videos, 7 rejected (scenes 6, video 1)")
    assert "     6  scenes: 1 usable scene(s), fewer than min_scenes=2" in message
    assert "     1  video: mp4 bytes are empty" in message
    first = message.split("first rejections:\n")[1].split("\n  what to do:")[0].splitlines()
    assert len(first) == 5 and first[0].startswith("    short0 (") and "row 0) scenes: 1 usable scene(s)" in first[0]
    assert "scenes: too few usable scenes: lower min_scenes or raise max_seconds" in message
    assert "video: the mp4 cannot be decoded" in message

    # The real step's function (what the pipeline runs) prints the counts and raises the same.
    with pytest.raises(NoVideosError, match="no video survived data preparation: 7 rows read"):
        merge_corpus.entrypoint([part for part, _ in parts], [part_log for _, part_log in parts])


def test_no_row_read_says_so():
    with pytest.raises(NoVideosError, match="no row was read .* check finevideo_root and max_videos"):
        require_videos(VideoCorpus(root=None, videos=[], rows_read=0), RejectionLog())


def test_a_single_video_cannot_be_split_and_the_error_says_what_to_do():
    with pytest.raises(ValueError, match=r"need at least 2 videos to split into training and benchmark videos, got 1: "
                                         r"prepare more .*or set paper_overlap"):
        split_videos(["only"])
    assert split_videos(["only"], paper_overlap=True).train_ids == ["only"]

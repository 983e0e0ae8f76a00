import fsspec
import pyarrow.parquet as pq
import pytest

from timewarp.data.ingest import iter_rows, list_shards
from timewarp.data.sample import finevideo_arrow_schema, make_sample
from helpers import good_row, write_rows


def test_lists_shards_with_row_counts(sample_root):
    shards = list_shards(str(sample_root))
    assert [s.uri.rsplit("/", 1)[-1] for s in shards.shards] == [
        "train-00000-of-00002.parquet",
        "train-00001-of-00002.parquet",
    ]
    assert [s.rows for s in shards.shards] == [8, 4] and shards.rows == 12
    assert shards.content_hash() == list_shards(str(sample_root)).content_hash()


def test_fsspec_uris_read_the_same_rows(sample_root):
    local = list_shards(str(sample_root))
    memory = fsspec.filesystem("memory")
    for shard in local.shards:
        memory.pipe(f"/finevideo/data/{shard.uri.rsplit('/', 1)[-1]}", open(shard.uri, "rb").read())
    remote = list_shards("memory://finevideo")
    assert all(s.uri.startswith("memory://") for s in remote.shards)
    assert [r.annotation for r in iter_rows(remote.shards[1])] == [r.annotation for r in iter_rows(local.shards[1])]
    assert list_shards(f"file://{sample_root}").rows == 12


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="data/\\*.parquet"):
        list_shards(str(tmp_path))


def test_rows_stream_one_row_group_at_a_time(tmp_path, monkeypatch):
    root = write_rows(tmp_path, [[good_row(f"v{i}") for i in range(6)]], row_group_size=2)
    shard = list_shards(str(root)).shards[0]
    reads = []
    original = pq.ParquetFile.read_row_group
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", lambda self, i, **kw: reads.append(i) or original(self, i, **kw))
    rows = iter_rows(shard, limit=5)
    first = next(rows)
    assert (first.row, reads) == (0, [0])  # only the first row group is in memory
    assert [r.row for r in rows] == [1, 2, 3, 4] and reads == [0, 1, 2]


def test_selection_is_global_then_dealt_to_groups(sample_root):
    shards = list_shards(str(sample_root))
    assert [(s.rows, n) for s, n in shards.selection(10)] == [(8, 8), (4, 2)]
    assert [n for _, n in shards.selection(10, group=0, groups=2)] == [8]
    assert [n for _, n in shards.selection(10, group=1, groups=2)] == [2]
    assert [n for _, n in shards.selection(5, group=1, groups=2)] == []


def test_sample_has_finevideo_layout_and_is_deterministic(tmp_path):
    first = make_sample(tmp_path / "a", videos=3, seed=11)
    second = make_sample(tmp_path / "b", videos=3, seed=11)
    other = make_sample(tmp_path / "c", videos=3, seed=12)
    assert pq.read_schema(first[0]).equals(finevideo_arrow_schema())
    table_a, table_b = pq.read_table(first[0]), pq.read_table(second[0])
    assert table_a.equals(table_b)
    assert not table_a.column("mp4").equals(pq.read_table(other[0]).column("mp4"))
    assert table_a.column("mp4")[0].as_py()[4:8] == b"ftyp"


def test_sample_videos_differ_from_each_other(sample_root):
    rows = [r for shard in list_shards(str(sample_root)).shards for r in iter_rows(shard)]
    captions = {tuple(s["activities"][0]["description"] for s in r.annotation["content_metadata"]["scenes"]) for r in rows}
    assert len(captions) == len(rows)
    assert len({r.mp4 for r in rows}) == len(rows)

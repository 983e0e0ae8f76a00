"""Finding FineVideo shards on any fsspec filesystem and streaming their rows.

Shards are read one row group at a time, so memory follows the row-group size, never
the corpus size. ``hf://datasets/HuggingFaceFV/finevideo`` (huggingface_hub's
filesystem; the token comes from ``HF_TOKEN``), ``s3://...`` (with s3fs installed), a
local folder or ``file://`` / ``memory://`` URIs all work the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import fsspec
import pyarrow.parquet as pq


@dataclass(frozen=True)
class ShardInfo:
    uri: str
    rows: int
    # Changes when the file does (size plus the store's etag / mtime where it has one).
    fingerprint: str


@dataclass(frozen=True)
class ShardSet:
    """The parquet shards of one FineVideo-format source, in read order."""

    root: str
    shards: list[ShardInfo]
    # True for shards made inside a run (the sample): they are stored with the artifact.
    generated: bool = False

    @property
    def rows(self) -> int:
        return sum(shard.rows for shard in self.shards)

    def content_hash(self) -> str:
        payload = json.dumps([asdict(s) for s in self.shards], sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()

    def to_json(self) -> str:
        return json.dumps({"root": self.root, "shards": [asdict(s) for s in self.shards]}, indent=1)

    def relocated(self, root: str) -> "ShardSet":
        """The same shards under another root folder (same file names)."""
        return ShardSet(
            root=root,
            shards=[
                ShardInfo(f"{root.rstrip('/')}/data/{s.uri.rsplit('/', 1)[-1]}", s.rows, s.fingerprint)
                for s in self.shards
            ],
        )

    @classmethod
    def from_json(cls, text: str) -> "ShardSet":
        data = json.loads(text)
        return cls(root=data["root"], shards=[ShardInfo(**s) for s in data["shards"]])

    def selection(self, max_videos: int | None, group: int = 0, groups: int = 1) -> list[tuple[ShardInfo, int]]:
        """(shard, rows to read) for shard group ``group`` of ``groups``.

        The first ``max_videos`` rows in (shard, row) order are selected globally, then
        shards are dealt round-robin to groups, so the rows read never depend on the
        number of groups.
        """
        if not 0 <= group < groups:
            raise ValueError(f"group {group} is not in 0..{groups - 1}")
        remaining = self.rows if max_videos is None else max_videos
        picked = []
        for index, shard in enumerate(self.shards):
            take = min(shard.rows, max(remaining, 0))
            remaining -= take
            if take and index % groups == group:
                picked.append((shard, take))
        return picked


@dataclass(frozen=True)
class RawRow:
    """One FineVideo row as read, before any validation."""

    shard: str
    row: int
    mp4: bytes | None
    annotation: object  # the decoded ``json`` struct (normally a dict), unvalidated


def _fingerprint(info: dict) -> str:
    parts = [str(info.get("size"))]
    for key in ("ETag", "etag", "blob_id", "lfs", "mtime", "LastModified", "last_modified", "created"):
        if info.get(key) is not None:
            parts.append(f"{key}={info[key]}")
    return ";".join(parts)


def list_shards(root: str) -> ShardSet:
    """The ``data/*.parquet`` shards under ``root`` (sorted by name) with row counts read
    from their footers."""
    fs, path = fsspec.core.url_to_fs(root)
    pattern = path.rstrip("/") + "/data/*.parquet"
    found = sorted(fs.glob(pattern))
    if not found:
        raise FileNotFoundError(f"no parquet shards match {root.rstrip('/')}/data/*.parquet")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    shards = []
    for shard_path in found:
        uri = shard_path if protocol in ("file", "local") else f"{protocol}://{shard_path}"
        with fs.open(shard_path, "rb") as handle:
            rows = pq.ParquetFile(handle).metadata.num_rows
        shards.append(ShardInfo(uri=uri, rows=rows, fingerprint=_fingerprint(fs.info(shard_path))))
    return ShardSet(root=root, shards=shards)


def iter_rows(shard: ShardInfo, limit: int | None = None) -> Iterator[RawRow]:
    """Rows of one shard in order, one row group in memory at a time.

    A row group that cannot be read is reported row by row (``annotation`` is the
    error string, ``mp4`` None), so no row goes missing silently.
    """
    limit = shard.rows if limit is None else min(limit, shard.rows)
    with fsspec.open(shard.uri, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        missing = {"mp4", "json"} - set(parquet.schema_arrow.names)
        if missing:
            raise ValueError(f"{shard.uri}: not a FineVideo shard, missing column(s) {sorted(missing)}")
        row = 0
        for group in range(parquet.num_row_groups):
            if row >= limit:
                return
            group_rows = parquet.metadata.row_group(group).num_rows
            try:
                table = parquet.read_row_group(group, columns=["mp4", "json"])
            except Exception as error:  # a damaged row group: report each of its rows
                for offset in range(min(group_rows, limit - row)):
                    yield RawRow(shard.uri, row + offset, None, f"row group {group} unreadable: {error}")
                row += group_rows
                continue
            mp4s = table.column("mp4")
            annotations = table.column("json")
            for offset in range(min(table.num_rows, limit - row)):
                yield RawRow(shard.uri, row + offset, mp4s[offset].as_py(), annotations[offset].as_py())
            row += group_rows
            del table, mp4s, annotations

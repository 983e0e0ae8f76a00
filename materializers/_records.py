"""Storing lists of typed records (frozen dataclasses) as parquet, plus a JSON header."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, fields, is_dataclass
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from zenml.io import fileio

T = TypeVar("T")
HEADER = "header.json"


def save_records(uri: str, name: str, records: list[Any], header: dict[str, Any] | None = None) -> None:
    with tempfile.TemporaryDirectory() as local:
        path = os.path.join(local, f"{name}.parquet")
        pq.write_table(pa.Table.from_pylist([asdict(r) for r in records]), path)
        fileio.copy(path, os.path.join(uri, f"{name}.parquet"), overwrite=True)
    if header is not None:
        with fileio.open(os.path.join(uri, HEADER), "w") as handle:
            handle.write(json.dumps(header))


def load_records(uri: str, name: str, record_type: type[T]) -> list[T]:
    assert is_dataclass(record_type)
    names = {f.name for f in fields(record_type)}
    with tempfile.TemporaryDirectory() as local:
        path = os.path.join(local, f"{name}.parquet")
        fileio.copy(os.path.join(uri, f"{name}.parquet"), path)
        rows = pq.read_table(path).to_pylist()
    return [record_type(**{k: v for k, v in row.items() if k in names}) for row in rows]


def load_header(uri: str) -> dict[str, Any]:
    with fileio.open(os.path.join(uri, HEADER), "r") as handle:
        return json.loads(handle.read())


def write_html(uri: str, name: str, html_text: str) -> str:
    path = os.path.join(uri, name)
    with fileio.open(path, "w") as handle:
        handle.write(html_text)
    return path

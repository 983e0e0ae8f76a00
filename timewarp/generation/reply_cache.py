"""The persistent reply cache every engine shares: a re-run or resumed run never pays
twice for the same request. Only a hashed key and the reply text are stored."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["ResponseCache", "make_cache_key"]


def make_cache_key(messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> str:
    """sha256 hex digest of the canonical JSON of (model, messages, params)."""
    payload = {"model": params.get("model"), "messages": list(messages), "params": dict(params)}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """Thread-safe persistent cache of reply texts in one SQLite file.

    Each :meth:`put` commits immediately (autocommit, WAL journal), so replies
    survive a crash or interrupt and a resumed run finds them. Only the hashed
    key and the reply text are stored (no prompts, URLs or keys). One
    connection is shared by all threads behind a lock (writes are tiny; the
    network call dominates), and a 30 s busy timeout lets several processes
    share the same file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None -> autocommit: every put is durable on return.
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=30.0
        )
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is crash-safe for the application under WAL and avoids an fsync per reply.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS responses ("
                " key TEXT PRIMARY KEY, text TEXT NOT NULL, created REAL NOT NULL)"
            )

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"ResponseCache({str(self.path)!r}) is closed")
        return self._conn

    def get(self, key: str) -> str | None:
        """The cached reply text for ``key``, or ``None``."""
        with self._lock:
            row = self._connection().execute("SELECT text FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, text: str) -> None:
        """Store (or replace) the reply text for ``key``; durable on return."""
        with self._lock:
            self._connection().execute(
                "INSERT OR REPLACE INTO responses (key, text, created) VALUES (?, ?, ?)",
                (key, text, time.time()),
            )

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._connection().execute("SELECT COUNT(*) FROM responses").fetchone()
        return int(count)

    def close(self) -> None:
        """Close the database (idempotent); the WAL is checkpointed into the main file."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"

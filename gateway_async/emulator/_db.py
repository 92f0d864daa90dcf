"""SQLite persistence: one ``key -> JSON`` table per kind of state.

With a data directory the file is ``state.sqlite3`` and survives restarts; without one the
same code runs on ``:memory:``, so there is a single code path. Writes are single
autocommitted statements in WAL mode without fsync: cheap enough to do inline; a
:meth:`Db.transaction` groups the writes that must land together (a charge and its reply).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TABLES = ("meta", "uploads", "media", "usage", "idempotency", "vectors", "multipart")


class Db:
    """A tiny key/value store over SQLite."""

    def __init__(self, path: Path | None) -> None:
        self._conn = sqlite3.connect(
            ":memory:" if path is None else str(path), isolation_level=None
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=OFF")
        for table in TABLES:
            self._conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (k TEXT PRIMARY KEY, v TEXT)")

    def put(self, table: str, key: str, value: Mapping[str, Any]) -> None:
        """Insert or replace one record."""
        self._conn.execute(
            f"INSERT OR REPLACE INTO {table} (k, v) VALUES (?, ?)", (key, json.dumps(value))
        )

    def delete(self, table: str, key: str) -> None:
        """Remove one record if present."""
        self._conn.execute(f"DELETE FROM {table} WHERE k = ?", (key,))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Make the writes inside one atomic step: all of them land, or none."""
        self._conn.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def load(self, table: str) -> dict[str, dict[str, Any]]:
        """Every record of a table, in insertion order."""
        rows = self._conn.execute(f"SELECT k, v FROM {table} ORDER BY rowid")
        return {key: json.loads(value) for key, value in rows}

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

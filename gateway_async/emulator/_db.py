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
    """A tiny key/value store over SQLite; :meth:`scoped` gives one workspace's view."""

    def __init__(self, path: Path | None) -> None:
        self._prefix = ""
        self._conn = sqlite3.connect(
            ":memory:" if path is None else str(path), isolation_level=None
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=OFF")
        for table in TABLES:
            self._conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (k TEXT PRIMARY KEY, v TEXT)")

    def scoped(self, name: str) -> Db:
        """The same database seen by one workspace: its keys are stored as ``name/key``, so
        no workspace can load, overwrite or delete another's records."""
        view = Db.__new__(Db)
        view._conn, view._prefix = self._conn, f"{self._prefix}{name}/"
        return view

    def adopt_legacy(self, name: str) -> None:
        """Give the records of a data dir written before workspaces existed (keys without a
        ``/``; the storage secret stays shared) to workspace ``name``."""
        with self.transaction():
            for table in TABLES:
                self._conn.execute(
                    f"UPDATE {table} SET k = ? || k WHERE instr(k, '/') = 0 AND k != 'secret'",
                    (f"{name}/",),
                )

    def put(self, table: str, key: str, value: Mapping[str, Any]) -> None:
        """Insert or replace one record."""
        self._conn.execute(
            f"INSERT OR REPLACE INTO {table} (k, v) VALUES (?, ?)",
            (self._prefix + key, json.dumps(value)),
        )

    def delete(self, table: str, key: str) -> None:
        """Remove one record if present."""
        self._conn.execute(f"DELETE FROM {table} WHERE k = ?", (self._prefix + key,))

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
        """Every record of a table in this view, in insertion order (keys unprefixed)."""
        start = len(self._prefix)
        rows = self._conn.execute(
            f"SELECT k, v FROM {table} WHERE substr(k, 1, ?) = ? ORDER BY rowid",
            (start, self._prefix),
        )
        return {key[start:]: json.loads(value) for key, value in rows}

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

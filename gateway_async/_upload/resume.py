"""The multipart resume journal: which upload a file was going to, and which parts landed.

Two tables of their own in the caller's SQLite journal file (the ingest journal's file
works: its tables are untouched). A file is known by its absolute path, size and mtime, so
an edited file never resumes into an old upload. The ``upload_id`` is written before the
first part is sent; each part's sha256 and ETag once storage accepted it. A restarted
process trusts a stored part only when storage lists it with that ETag and the file's bytes
at that offset still hash to that sha256, and sends the rest.

SQLite calls are short and run in a worker thread, under a lock, so the loop never waits
on the disk. Each write is one autocommitted statement: a crash between two leaves a
journal that says less than storage holds, never more.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import attrs

from .._errors import InvalidRequestError, journal_error
from .files import SMALL_FILE
from .parts import MultipartTicket
from .sources import Source

__all__ = ["JournalArg", "Resumable", "ResumeJournal", "resume_key"]

T = TypeVar("T")
JournalArg = str | os.PathLike[str]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS multipart_uploads (
    key TEXT PRIMARY KEY, upload_id TEXT NOT NULL, size INTEGER NOT NULL,
    part_size INTEGER NOT NULL, method TEXT NOT NULL, headers TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS multipart_parts (
    upload_id TEXT NOT NULL, part_number INTEGER NOT NULL, sha256 TEXT NOT NULL,
    etag TEXT NOT NULL, PRIMARY KEY (upload_id, part_number));
"""


@attrs.frozen(kw_only=True)
class Resumable:
    """A journaled multipart upload: its id, its plan, how to PUT its parts (refreshed URLs
    come without the init's method and headers), and the parts known to be stored (part
    number -> (sha256, etag))."""

    upload_id: str
    size: int
    part_size: int
    method: str
    headers: dict[str, str]
    parts: dict[int, tuple[str, str]]


def resume_key(source: Source) -> str | None:
    """How the journal names a source; None for sources that cannot be recognised after a
    restart (bytes, file objects, async iterables) and for files of at most 1 MiB, which
    are cheaper to send again than to journal."""
    if source.kind != "path" or source.path is None or source.size <= SMALL_FILE:
        return None
    return f"{source.path.resolve()}|{source.size}|{source.mtime_ns}"


class ResumeJournal:
    """The journal file at a path, connected on first use (so the many small uploads that
    never need it never open it); use ``async with ResumeJournal.at(path)``."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @classmethod
    def at(cls, path: JournalArg) -> ResumeJournal:
        """The journal at ``path`` (created when first written); InvalidRequestError for
        anything but a path, before any request."""
        if not isinstance(path, str | os.PathLike):
            raise InvalidRequestError(
                f"journal: {type(path).__name__} is not a path; pass the SQLite file's path",
                field="journal",
            )
        return cls(Path(path))

    async def __aenter__(self) -> ResumeJournal:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.to_thread(conn.close)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        def locked() -> T:
            with self._lock:
                try:
                    if self._conn is None:
                        self._conn = _connect(self._path)
                    return fn(self._conn, *args)
                except (sqlite3.Error, OSError) as exc:  # the ingest's rule: typed, with advice
                    raise journal_error(str(self._path), exc) from None

        return await asyncio.to_thread(locked)

    async def find(self, key: str) -> Resumable | None:
        """The journaled upload of ``key``, if any."""
        return await self._call(self._find, key)

    @staticmethod
    def _find(conn: sqlite3.Connection, key: str) -> Resumable | None:
        row = conn.execute(
            "SELECT upload_id, size, part_size, method, headers FROM multipart_uploads "
            "WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        parts = conn.execute(
            "SELECT part_number, sha256, etag FROM multipart_parts WHERE upload_id = ?", (row[0],)
        )
        known = {number: (sha256, etag) for number, sha256, etag in parts}
        return Resumable(
            upload_id=row[0],
            size=row[1],
            part_size=row[2],
            method=row[3],
            headers=json.loads(row[4]),
            parts=known,
        )

    async def begin(self, key: str, size: int, ticket: MultipartTicket) -> None:
        """Remember that ``key`` is being uploaded as the ticket's upload (before any part)."""
        await self._call(
            sqlite3.Connection.execute,
            "INSERT OR REPLACE INTO multipart_uploads VALUES (?, ?, ?, ?, ?, ?)",
            (
                key,
                ticket.upload_id,
                size,
                ticket.part_size,
                ticket.method,
                json.dumps(ticket.headers),
            ),
        )

    async def part_stored(self, upload_id: str, number: int, sha256: str, etag: str) -> None:
        """Remember a part that storage accepted."""
        await self._call(
            sqlite3.Connection.execute,
            "INSERT OR REPLACE INTO multipart_parts VALUES (?, ?, ?, ?)",
            (upload_id, number, sha256, etag),
        )

    async def forget(self, key: str) -> None:
        """Drop ``key``'s upload and its parts (completed, or gone from the server)."""
        await self._call(self._forget, key)

    @staticmethod
    def _forget(conn: sqlite3.Connection, key: str) -> None:
        conn.execute(
            "DELETE FROM multipart_parts WHERE upload_id IN "
            "(SELECT upload_id FROM multipart_uploads WHERE key = ?)",
            (key,),
        )
        conn.execute("DELETE FROM multipart_uploads WHERE key = ?", (key,))


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(_SCHEMA)
    return conn

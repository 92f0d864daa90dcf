"""The resumable ingest journal: one SQLite file remembering what was uploaded and indexed.

Per source it records an identity (path, size, mtime_ns and, once known, the sha256 of the
content), and per content hash the ``media_ref`` it was uploaded as; per (source, job) the
run's id and status. Re-running an ingest therefore skips what is done, reuses uploads by
content (same sha256, no second upload) and resumes the rest.

SQLite runs in WAL mode on one worker thread that owns the only connection, so the event
loop never waits on disk; calls are queued to that thread in order. Every write is its own
transaction, and the state only ever moves forward, so a crash or a cancellation between two
writes leaves a journal that a later run reads correctly. A sidecar lock file (``flock``)
keeps a second process, or a second ``Journal`` in this one, from using the same file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final, Protocol, TypeVar

import attrs

from ._errors import GatewayError
from .models import MediaRef

__all__ = ["Journal", "JournalLockedError", "Recall", "RunRecord"]

T = TypeVar("T")


class SourceStat(Protocol):
    """What the journal records of a source besides its key."""

    @property
    def path(self) -> str | None: ...
    @property
    def size(self) -> int | None: ...
    @property
    def mtime_ns(self) -> int | None: ...


SCHEMA_VERSION: Final = 1
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS media (
    sha256 TEXT PRIMARY KEY, media_ref TEXT NOT NULL, size INTEGER NOT NULL,
    content_type TEXT NOT NULL, filename TEXT);
CREATE TABLE IF NOT EXISTS sources (
    key TEXT PRIMARY KEY, path TEXT, size INTEGER, mtime_ns INTEGER, sha256 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    key TEXT NOT NULL, job TEXT NOT NULL, sha256 TEXT NOT NULL, run_id TEXT,
    status TEXT NOT NULL, credits TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL, PRIMARY KEY (key, job));
"""


class JournalLockedError(GatewayError):
    """The journal file is in use by another process (or another ``Journal`` object)."""


@attrs.frozen(kw_only=True)
class Recall:
    """What the journal knows about one source for one job."""

    sha256: str | None = None  # None: new or changed since last time (size or mtime)
    media: MediaRef | None = None
    done_sha256: str | None = None  # the content whose run of this job succeeded
    attempts: int = 0  # finished failed attempts: part of the next run's idempotency key

    def done(self, sha256: str | None) -> bool:
        """Whether this job already succeeded on this very content."""
        return sha256 is not None and sha256 == self.done_sha256


@attrs.frozen(kw_only=True)
class RunRecord:
    """The outcome of one run attempt, as the journal stores it."""

    key: str
    job: str
    sha256: str
    status: str  # "succeeded", "failed" (a definite answer) or "error" (maybe not executed)
    run_id: str | None = None
    credits: Decimal | None = None
    final_failure: bool = False  # the attempt surely ended: the next one needs a new key


class _Lock:
    """An exclusive, non-blocking ``flock`` on ``<journal>.lock``, held while open."""

    def __init__(self) -> None:
        self._fd: int | None = None

    def acquire(self, journal: str) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: SQLite's own locking still keeps the file sound
            return
        lock_path = journal + ".lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalLockedError(
                f"journal {journal} is in use by another ingest (lock file {lock_path}); "
                "wait for it to finish, or use another journal"
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the flock


class Journal:
    """A journal file, open and locked. ``async with await Journal.open(path) as journal:``.

    Pass a path as ``ingest(journal=...)`` and the pipeline opens and closes it; pass an open
    ``Journal`` to share one between several ingests of a long-running worker.
    """

    def __init__(self, path: str, lock: _Lock, executor: ThreadPoolExecutor, jid: str) -> None:
        self.path = path
        self.id = jid  # random per journal file: seeds the deterministic idempotency keys
        self._lock = lock
        self._executor = executor
        self._closed = False

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> Journal:
        """Lock and open (or create) the journal at ``path``."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-journal")
        lock = _Lock()
        try:
            loop = asyncio.get_running_loop()
            filename, jid = await loop.run_in_executor(executor, _connect, path, lock)
        except BaseException:
            executor.shutdown(wait=True)
            lock.release()
            raise
        return cls(filename, lock, executor, jid)

    async def __aenter__(self) -> Journal:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Finish the queued writes, close the connection and drop the lock. Idempotent."""
        if self._closed:
            return
        self._closed = True
        done = asyncio.get_running_loop().run_in_executor(self._executor, _disconnect)
        try:
            await asyncio.shield(done)
        finally:
            # Returns at once, unless we were cancelled above: then wait for the close.
            self._executor.shutdown(wait=True)
            self._lock.release()

    def run_key(self, key: str, sha256: str, job: str, attempts: int) -> str:
        """The idempotency key of a run: the same for a retry of an unfinished attempt."""
        parts = (self.id, key, sha256, job, str(attempts))
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    async def recall(
        self, key: str, job: str, *, size: int | None, mtime_ns: int | None, sha256: str | None
    ) -> Recall:
        """What is known of source ``key``: its content hash if unchanged, upload, run."""
        return await self._call(_recall, key, job, size, mtime_ns, sha256)

    async def media_for(self, sha256: str) -> MediaRef | None:
        """A media_ref already uploaded with this content, if any."""
        return await self._call(_media_for, sha256)

    async def remember(self, key: str, source: SourceStat, media: MediaRef) -> None:
        """Record a source's identity (path, size, mtime) and the upload holding its content."""
        await self._call(_remember, key, source.path, source.size, source.mtime_ns, media)

    async def record_run(self, record: RunRecord) -> None:
        await self._call(_record_run, record)

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise GatewayError(f"journal {self.path} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


# -- the worker thread's side: one connection, owned by that thread -------------------------


class _ThreadConnection(threading.local):
    """Each journal's worker thread sees its own connection here (one per journal file)."""

    conn: sqlite3.Connection | None = None


_local = _ThreadConnection()


def _db() -> sqlite3.Connection:
    assert _local.conn is not None, "journal calls run on the journal's own thread"
    return _local.conn


def _connect(path: str | os.PathLike[str], lock: _Lock) -> tuple[str, str]:
    """Lock, open and (if new) set up the journal; returns its absolute path and its id."""
    filename = os.path.abspath(os.fspath(path))
    lock.acquire(filename)
    conn = sqlite3.connect(filename, timeout=5.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        conn.close()
        raise GatewayError(f"journal {filename} was written by a newer gateway-async")
    with conn:
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute(
            "INSERT OR IGNORE INTO meta (name, value) VALUES ('id', ?)", (os.urandom(16).hex(),)
        )
    _local.conn = conn
    return filename, str(conn.execute("SELECT value FROM meta WHERE name = 'id'").fetchone()[0])


def _disconnect() -> None:
    conn, _local.conn = _local.conn, None
    if conn is not None:
        conn.close()


def _recall(
    key: str, job: str, size: int | None, mtime_ns: int | None, sha256: str | None
) -> Recall:
    db = _db()
    if sha256 is None:
        row = db.execute(
            "SELECT sha256 FROM sources WHERE key = ? AND size IS ? AND mtime_ns IS ?",
            (key, size, mtime_ns),
        ).fetchone()
        sha256 = row[0] if row else None
    run = db.execute(
        "SELECT sha256, status, attempts FROM runs WHERE key = ? AND job = ?", (key, job)
    ).fetchone()
    done = run[0] if run is not None and run[1] == "succeeded" else None
    return Recall(
        sha256=sha256,
        media=None if sha256 is None else _media_for(sha256),
        done_sha256=done,
        attempts=run[2] if run else 0,
    )


def _media_for(sha256: str) -> MediaRef | None:
    row = (
        _db()
        .execute(
            "SELECT media_ref, size, content_type, filename FROM media WHERE sha256 = ?", (sha256,)
        )
        .fetchone()
    )
    if row is None:
        return None
    return MediaRef(
        media_ref=row[0], size=row[1], content_type=row[2], sha256=sha256, filename=row[3]
    )


def _remember(
    key: str, path: str | None, size: int | None, mtime_ns: int | None, media: MediaRef
) -> None:
    assert media.sha256 is not None
    with _db() as db:
        db.execute(
            "INSERT OR REPLACE INTO media VALUES (?, ?, ?, ?, ?)",
            (media.sha256, media.media_ref, media.size, media.content_type, media.filename),
        )
        db.execute(
            "INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?, ?)",
            (key, path, size, mtime_ns, media.sha256),
        )


def _record_run(record: RunRecord) -> None:
    credits = None if record.credits is None else str(record.credits)
    bump = 1 if record.final_failure else 0
    with _db() as db:
        db.execute(
            "INSERT INTO runs (key, job, sha256, run_id, status, credits, attempts, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key, job) DO UPDATE SET "
            "sha256 = excluded.sha256, run_id = excluded.run_id, status = excluded.status, "
            "credits = excluded.credits, attempts = attempts + ?, updated_at = excluded.updated_at",
            (
                record.key,
                record.job,
                record.sha256,
                record.run_id,
                record.status,
                credits,
                bump,
                datetime.now(UTC).isoformat(),
                bump,
            ),
        )

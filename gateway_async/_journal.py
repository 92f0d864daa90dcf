"""The resumable ingest journal: one SQLite file remembering what was uploaded and indexed.

Per source it records an identity (path, size, mtime_ns and, once known, the sha256 of the
content), and per content hash the ``media_ref`` it was uploaded as; per (source, job) the
run attempt: its state, its idempotency key and the exact request body that key covers,
written *before* the request is sent (write-ahead), so a resumed attempt re-sends the same
body under the same key and the Gateway replays it instead of running it twice. Re-running
an ingest therefore skips what is done, resumes what is pending, reuses uploads by content
(same sha256, no second upload) and runs the rest. The run states and their only moves
are the ``_MOVES`` table below (drawn in ``docs/pipeline.md``).

SQLite runs in WAL mode on one worker thread that owns the only connection, so the event
loop never waits on disk; calls are queued to that thread in order. Every write is its own
transaction, and the state only ever moves forward, so a crash or a cancellation between two
writes leaves a journal that a later run reads correctly. A sidecar lock file (``flock``)
keeps a second process, or a second ``Journal`` in this one, from using the same file.
``PRAGMA user_version`` holds the schema version; older files are migrated step by step
(``_MIGRATIONS``) when opened.
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
from typing import Final, Protocol, TypeVar

import attrs

from ._errors import GatewayError, RateLimitError, executed_outcome
from .models import MediaRef, Run

__all__ = ["Intent", "Journal", "JournalLockedError", "Recall", "never_executed", "settled_state"]

T = TypeVar("T")


class SourceStat(Protocol):
    """What the journal records of a source besides its key."""

    @property
    def path(self) -> str | None: ...
    @property
    def size(self) -> int | None: ...
    @property
    def mtime_ns(self) -> int | None: ...


SCHEMA_VERSION: Final = 2
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
    updated_at TEXT NOT NULL, idem_key TEXT, body TEXT, PRIMARY KEY (key, job));
"""
# Version n -> n + 1, in order; each runs in the transaction that sets user_version.
_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        "ALTER TABLE runs ADD COLUMN idem_key TEXT",
        "ALTER TABLE runs ADD COLUMN body TEXT",
        "UPDATE runs SET status = 'pending' WHERE status = 'error'",
    ),
}

# The run states of one (source, job), and the only moves between them (see the table in
# docs/pipeline.md). "pending" is written *before* the request is sent, with the key and
# the exact body: whatever happens next, a later attempt re-sends that body under that key.
PENDING: Final = "pending"  # sent, or about to be: the outcome is not known
SUCCEEDED: Final = "succeeded"  # final
FAILED: Final = "failed"  # executed and answered failed: a rerun tries a new attempt
REJECTED: Final = "rejected"  # a definite 4xx: never executed; a rerun tries a new attempt
_MOVES: Final[dict[str | None, frozenset[str]]] = {
    None: frozenset({PENDING}),
    PENDING: frozenset({SUCCEEDED, FAILED, REJECTED}),
    FAILED: frozenset({PENDING}),
    REJECTED: frozenset({PENDING}),
    SUCCEEDED: frozenset(),
}


class JournalLockedError(GatewayError):
    """The journal file is in use by another process (or another ``Journal`` object)."""


@attrs.frozen(kw_only=True)
class Intent:
    """A run attempt written ahead: its idempotency key and the exact JSON body it covers."""

    sha256: str  # the content it runs on
    idem_key: str = attrs.field(repr=False)
    body: str = attrs.field(repr=False)


@attrs.frozen(kw_only=True)
class Recall:
    """What the journal knows about one source for one job."""

    sha256: str | None = None  # None: new or changed since last time (size or mtime)
    media: MediaRef | None = None
    done_sha256: str | None = None  # the content whose run of this job succeeded
    pending: Intent | None = None  # an attempt whose outcome is unknown: re-send it as is

    def done(self, sha256: str | None) -> bool:
        """Whether this job already succeeded on this very content."""
        return sha256 is not None and sha256 == self.done_sha256

    def resumable(self, sha256: str | None) -> Intent | None:
        """The pending attempt to re-send for this content, if there is one."""
        if self.pending is not None and self.pending.sha256 == sha256:
            return self.pending
        return None


def never_executed(error: BaseException) -> bool:
    """The one outcome rule (``executed_outcome``): a refusal before the request, or an
    answer that proves nothing ran, to a call no earlier attempt of which may have run."""
    return executed_outcome(error) == "not executed"


def settled_state(outcome: Run | BaseException) -> str | None:
    """The state an attempt's outcome moves to; None: unknown, it stays pending.

    A 429 leaves it pending as well: its key and body are as good for the next try.
    """
    if isinstance(outcome, Run):
        return SUCCEEDED if outcome.succeeded else FAILED
    if never_executed(outcome) and not isinstance(outcome, RateLimitError):
        return REJECTED
    return None


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
        """The idempotency key of attempt number ``attempts`` of a run (unique per attempt)."""
        return _run_key(self.id, key, sha256, job, attempts)

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

    async def begin_run(self, key: str, job: str, sha256: str, body: str) -> Intent:
        """Write a run attempt ahead of sending it; returns what to send, and under which key.

        If an attempt on this content is already pending (its outcome unknown), that one is
        returned unchanged, its stored body included: the caller must send it, not ``body``.
        """
        return await self._call(_begin_run, self.id, key, job, sha256, body)

    async def settle_run(
        self, key: str, job: str, intent: Intent, outcome: Run | BaseException
    ) -> None:
        """Record what became of ``intent``. An unknown outcome leaves it pending; a late
        outcome of an attempt that is no longer the pending one changes nothing."""
        state = settled_state(outcome)
        if state is not None:
            run = outcome if isinstance(outcome, Run) else None
            await self._call(_settle_run, key, job, intent.idem_key, state, run)

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
    """Lock, open and (if new or older) set up the journal; returns its path and its id."""
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
        if version == 0:  # new: today's schema
            conn.executescript(_SCHEMA)
            version = SCHEMA_VERSION
        conn.execute(
            "INSERT OR IGNORE INTO meta (name, value) VALUES ('id', ?)", (os.urandom(16).hex(),)
        )
        jid = str(conn.execute("SELECT value FROM meta WHERE name = 'id'").fetchone()[0])
        _migrate(conn, jid, version)
    _local.conn = conn
    return filename, jid


def _migrate(conn: sqlite3.Connection, jid: str, version: int) -> None:
    """Bring a journal of ``version`` up to ``SCHEMA_VERSION``, one step at a time."""
    for step in range(version, SCHEMA_VERSION):
        for statement in _MIGRATIONS[step]:
            conn.execute(statement)
        if step == 1:  # v1 derived its keys from the attempt count: keep them
            rows = conn.execute(
                "SELECT key, job, sha256, attempts FROM runs WHERE status = ?", (PENDING,)
            ).fetchall()
            for key, job, sha256, attempts in rows:
                idem_key = _run_key(jid, key, sha256, job, attempts)
                conn.execute(
                    "UPDATE runs SET idem_key = ? WHERE key = ? AND job = ?", (idem_key, key, job)
                )
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _run_key(jid: str, key: str, sha256: str, job: str, attempts: int) -> str:
    return hashlib.sha256("\0".join((jid, key, sha256, job, str(attempts))).encode()).hexdigest()


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
    run = _run_row(key, job)
    pending = None
    if run is not None and run.status == PENDING and run.idem_key and run.body is not None:
        pending = Intent(sha256=run.sha256, idem_key=run.idem_key, body=run.body)
    return Recall(
        sha256=sha256,
        media=None if sha256 is None else _media_for(sha256),
        done_sha256=run.sha256 if run is not None and run.status == SUCCEEDED else None,
        pending=pending,
    )


@attrs.frozen
class _RunRow:
    status: str
    sha256: str
    attempts: int
    idem_key: str | None
    body: str | None


def _run_row(key: str, job: str) -> _RunRow | None:
    row = (
        _db()
        .execute(
            "SELECT status, sha256, attempts, idem_key, body FROM runs WHERE key = ? AND job = ?",
            (key, job),
        )
        .fetchone()
    )
    return None if row is None else _RunRow(*row)


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


def _moving(to: str, current: str | None) -> None:
    """Refuse a move the state machine does not have (a bug, never a user error)."""
    if to not in _MOVES[current]:
        raise GatewayError(f"journal: a run cannot move from {current or 'new'} to {to}")


def _begin_run(jid: str, key: str, job: str, sha256: str, body: str) -> Intent:
    with _db() as db:
        row = _run_row(key, job)
        # A run's life is per content: a changed source starts a new one.
        current = row.status if row is not None and row.sha256 == sha256 else None
        if row is not None and current == PENDING and row.idem_key:
            if row.body is None:  # written by version 1: its key, and from now on this body
                db.execute("UPDATE runs SET body = ? WHERE key = ? AND job = ?", (body, key, job))
            return Intent(sha256=sha256, idem_key=row.idem_key, body=row.body or body)
        _moving(PENDING, current)
        attempts = 0 if row is None else row.attempts + 1
        idem_key = _run_key(jid, key, sha256, job, attempts)
        db.execute(
            "INSERT INTO runs (key, job, sha256, run_id, status, credits, attempts, updated_at, "
            "idem_key, body) VALUES (?, ?, ?, NULL, ?, NULL, ?, ?, ?, ?) "
            "ON CONFLICT (key, job) DO UPDATE SET sha256 = excluded.sha256, run_id = NULL, "
            "status = excluded.status, credits = NULL, attempts = excluded.attempts, "
            "updated_at = excluded.updated_at, idem_key = excluded.idem_key, body = excluded.body",
            (key, job, sha256, PENDING, attempts, _now(), idem_key, body),
        )
    return Intent(sha256=sha256, idem_key=idem_key, body=body)


def _settle_run(key: str, job: str, idem_key: str, state: str, run: Run | None) -> None:
    """Move the pending attempt ``idem_key`` to ``state``; any other row is left alone."""
    sources = sorted(s for s, moves in _MOVES.items() if s is not None and state in moves)
    marks = ", ".join("?" * len(sources))
    credits = None if run is None else str(run.usage.credits)
    with _db() as db:
        db.execute(
            "UPDATE runs SET status = ?, run_id = ?, credits = ?, updated_at = ? "
            f"WHERE key = ? AND job = ? AND idem_key = ? AND status IN ({marks})",
            (state, None if run is None else run.id, credits, _now(), key, job, idem_key, *sources),
        )


def _now() -> str:
    return datetime.now(UTC).isoformat()

"""The ingest journal: a cache of identities already finished, in one SQLite file.

The identity of an upload is (job, sha256, size) of the bytes sent, and of a run (job, the
exact request body with each media input standing for its content's sha256); every key
derives from it (``idempotency_key``), so a process without any journal redoes a job
exactly once for as long as the Gateway remembers keys (24 hours). The journal only makes
that cheaper and longer: per content it records the ``media_ref`` it was uploaded as, and
per run identity (``runs.key``, which is also its Idempotency-Key) its state and the exact
body written *before* the request is sent, so a rerun skips what is done without any
request, re-sends an attempt whose outcome is unknown with its very body, and still knows
after 24 hours. The run states and their only moves are the ``_MOVES`` table below (drawn
in ``docs/pipeline.md``).

A journal is bound to the Gateway's base URL, the workspace (from the wallet) and the job
on first use; used against another one it raises ``JournalMismatchError``, before any
upload or run. A file that is damaged, not a journal, unreadable or unwritable raises
``JournalError`` naming the path and what to do, never a raw ``sqlite3`` error.

SQLite runs in WAL mode on one worker thread that owns the only connection, so the event
loop never waits on disk; calls are queued to that thread in order. Every write is its own
transaction, and the state only ever moves forward, so a crash or a cancellation between two
writes leaves a journal that a later run reads correctly. An exclusive ``flock`` on the
journal file itself (its real identity: symlinks and hard links resolve to one lock, and
no lock file is left beside it) keeps a second process, or a second ``Journal`` in this
one, from using it at once. ``PRAGMA user_version`` holds the schema version; older files
are migrated step by step (``_MIGRATIONS``) when opened; a version-2 journal's finished
runs (keyed by source) are still recognised by content and stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Final, Protocol, TypeVar

import attrs

from ._errors import (
    GatewayError,
    JournalError,
    JournalLockedError,
    JournalMismatchError,
    RateLimitError,
    executed_outcome,
    journal_error,
)
from .models import MediaRef, Run

__all__ = [
    "Intent",
    "Journal",
    "JournalError",
    "JournalLockedError",
    "JournalMismatchError",
    "Recall",
    "journal_files",
    "never_executed",
    "settled_state",
]

T = TypeVar("T")


class SourceStat(Protocol):
    """What the journal records of a source besides its key."""

    @property
    def path(self) -> str | None: ...
    @property
    def size(self) -> int | None: ...
    @property
    def mtime_ns(self) -> int | None: ...


SCHEMA_VERSION: Final = 3
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
    2: (),  # version 3: run rows keyed by identity; the binding is written on first use
}
_BINDING: Final = ("base_url", "workspace", "job")
_LEGACY: Final = "(key LIKE 'path:%' OR key LIKE 'sha256:%')"  # version-2 rows, by source

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


@attrs.frozen(kw_only=True)
class Intent:
    """A run attempt written ahead: its idempotency key and the exact JSON body it covers."""

    sha256: str  # the content it runs on
    idem_key: str = attrs.field(repr=False)
    body: str = attrs.field(repr=False)


@attrs.frozen(kw_only=True)
class Recall:
    """What the journal knows about one run identity."""

    done: bool = False  # it succeeded: skip it, without any request
    pending: Intent | None = None  # an attempt whose outcome is unknown: re-send it as is


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


# The files SQLite keeps beside a journal: its WAL, shared memory and rollback journal.
_SIDECARS: Final = ("-wal", "-shm", "-journal")
# ... and the ``.lock`` file that versions before the lock moved onto the journal itself left.
_OLD_LOCK: Final = ".lock"


def journal_files(journal: str | os.PathLike[str]) -> tuple[str, ...]:
    """Every file a journal at ``journal`` may write (itself first), as absolute paths: what
    a caller walking a folder for sources must leave out, or each run would ingest the
    journal it just changed (and pay again)."""
    path = os.path.abspath(os.fspath(journal))
    return (path, *(path + suffix for suffix in (*_SIDECARS, _OLD_LOCK)))


class _Lock:
    """An exclusive, non-blocking ``flock`` on the journal file itself, held while open.

    Taken on the file's real identity (the path resolved, then the open inode), so two
    names of one file (a symlink, a hard link) share the lock, and no lock file is ever
    created beside it. A file this lock created is removed again if the journal is refused
    before use (``discard``), so nothing is left among the user's files.
    """

    def __init__(self) -> None:
        self._fd: int | None = None
        self.real = ""
        self._created = False

    def acquire(self, journal: str) -> None:
        self.real = os.path.realpath(journal)
        self._created = not os.path.lexists(self.real)
        try:
            fd = os.open(self.real, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise journal_error(journal, exc) from None
        try:
            import fcntl
        except ImportError:  # not POSIX: SQLite's own locking still keeps the file sound
            self._fd = fd
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalLockedError(
                f"journal {journal} is in use by another ingest (the file {self.real} is "
                "locked); wait for it to finish, or use another journal",
                path=journal,
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the flock

    def discard(self) -> None:
        """Release, and remove the file (and SQLite's sidecars) if this lock created it."""
        self.release()
        if self._created:
            for suffix in ("", *_SIDECARS):
                with contextlib.suppress(OSError):
                    os.unlink(self.real + suffix)


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
        """Lock and open (or create) the journal at ``path``; ``JournalError`` (nothing left
        behind) when it cannot be used, ``JournalLockedError`` when another holds it."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-journal")
        lock = _Lock()
        try:
            loop = asyncio.get_running_loop()
            filename, jid = await loop.run_in_executor(executor, _connect, path, lock)
        except BaseException:
            executor.shutdown(wait=True)
            lock.discard()
            raise
        return cls(filename, lock, executor, jid)

    async def bind(self, base_url: str, workspace: str, job: str) -> None:
        """Bind a new journal to this Gateway, workspace and job, or check that it is
        bound to them: ``JournalMismatchError`` naming both otherwise (a journal written
        against staging would otherwise skip, or fail, every item in production)."""
        await self._call(_bind, self.path, (base_url, workspace, job))

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

    async def recall(self, key: str, job: str, sha256: str) -> Recall:
        """What is known of the run identity ``key`` (of stage ``job``, on content
        ``sha256``): done, or an attempt pending with its key and body."""
        return await self._call(_recall, key, job, sha256)

    async def media_for(self, sha256: str) -> MediaRef | None:
        """A media_ref already uploaded with this content, if any."""
        return await self._call(_media_for, sha256)

    async def remember(self, media: MediaRef) -> None:
        """Record the upload holding a content (by its sha256)."""
        await self._call(_remember, media)

    async def begin_run(self, key: str, job: str, sha256: str, body: str) -> Intent:
        """Write a run attempt ahead of sending it; returns what to send. ``key`` is the
        run's identity and its Idempotency-Key.

        If an attempt of this identity is already pending (its outcome unknown), that one is
        returned unchanged, its stored body included: the caller must send it, not ``body``.
        """
        return await self._call(_begin_run, key, job, sha256, body)

    async def settle_run(
        self, key: str, job: str, intent: Intent, outcome: Run | BaseException
    ) -> None:
        """Record what became of ``intent``. An unknown outcome leaves it pending; a late
        outcome of an attempt that is no longer the pending one changes nothing."""
        state = settled_state(outcome)
        if state is not None:
            run = outcome if isinstance(outcome, Run) else None
            await self._call(_settle_run, job, intent.idem_key, state, run)

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise GatewayError(f"journal {self.path} is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except (sqlite3.Error, OSError) as exc:
            error = journal_error(self.path, exc)
        raise error  # outside the except: the sqlite3 error is not chained


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
    try:
        conn = sqlite3.connect(lock.real, timeout=5.0)
    except sqlite3.Error as exc:
        raise journal_error(filename, exc) from None
    try:
        jid = _set_up(conn, filename)
    except (sqlite3.Error, OSError) as exc:
        conn.close()
        raise journal_error(filename, exc) from None
    except BaseException:
        conn.close()
        raise
    _local.conn = conn
    return filename, jid


def _set_up(conn: sqlite3.Connection, filename: str) -> str:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"journal {filename} was written by a newer gateway-async; upgrade, or pass "
            "another journal path",
            path=filename,
        )
    with conn:
        if version == 0:  # new: today's schema
            conn.executescript(_SCHEMA)
            version = SCHEMA_VERSION
        conn.execute(
            "INSERT OR IGNORE INTO meta (name, value) VALUES ('id', ?)", (os.urandom(16).hex(),)
        )
        jid = str(conn.execute("SELECT value FROM meta WHERE name = 'id'").fetchone()[0])
        _migrate(conn, jid, version)
    return jid


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


def _bind(path: str, binding: tuple[str, str, str]) -> None:
    db = _db()
    marks = ", ".join("?" * len(_BINDING))
    rows = dict(db.execute(f"SELECT name, value FROM meta WHERE name IN ({marks})", _BINDING))
    if not rows:
        with db:
            db.executemany(
                "INSERT INTO meta (name, value) VALUES (?, ?)", zip(_BINDING, binding, strict=True)
            )
        return
    bound = tuple(rows.get(name, "") for name in _BINDING)
    if bound != binding:
        raise JournalMismatchError(
            f"journal {path} belongs to {_describe(bound)}, not to {_describe(binding)}; "
            "its records mean nothing there: pass another journal path for this one",
            path=path,
        )


def _describe(binding: tuple[str, ...]) -> str:
    base_url, workspace, job = binding
    return f"Gateway {base_url} (workspace {workspace}, job {job or '(none)'!r})"


def _recall(key: str, job: str, sha256: str) -> Recall:
    run = _run_row(key, job)
    if run is None:  # a version-2 journal named the run by its source, not its identity
        run = _legacy_row(job, sha256)
    if run is None:
        return Recall()
    pending = None
    if run.status == PENDING and run.idem_key and run.body is not None:
        pending = Intent(sha256=run.sha256, idem_key=run.idem_key, body=run.body)
    return Recall(done=run.status == SUCCEEDED, pending=pending)


@attrs.frozen
class _RunRow:
    key: str
    status: str
    sha256: str
    attempts: int
    idem_key: str | None
    body: str | None


def _legacy_row(job: str, sha256: str) -> _RunRow | None:
    """A version-2 row of this stage and content: done, or pending (resent as written)."""
    row = (
        _db()
        .execute(
            "SELECT key, status, sha256, attempts, idem_key, body FROM runs WHERE job = ? AND "
            f"sha256 = ? AND {_LEGACY} AND status IN (?, ?) ORDER BY status = ? DESC LIMIT 1",
            (job, sha256, SUCCEEDED, PENDING, SUCCEEDED),
        )
        .fetchone()
    )
    return None if row is None else _RunRow(*row)


def _run_row(key: str, job: str) -> _RunRow | None:
    row = (
        _db()
        .execute(
            "SELECT key, status, sha256, attempts, idem_key, body FROM runs "
            "WHERE key = ? AND job = ?",
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


def _remember(media: MediaRef) -> None:
    assert media.sha256 is not None
    with _db() as db:
        db.execute(
            "INSERT OR REPLACE INTO media VALUES (?, ?, ?, ?, ?)",
            (media.sha256, media.media_ref, media.size, media.content_type, media.filename),
        )


def _moving(to: str, current: str | None) -> None:
    """Refuse a move the state machine does not have (a bug, never a user error)."""
    if to not in _MOVES[current]:
        raise GatewayError(f"journal: a run cannot move from {current or 'new'} to {to}")


def _begin_run(key: str, job: str, sha256: str, body: str) -> Intent:
    with _db() as db:
        row = _run_row(key, job)
        legacy = _legacy_row(job, sha256) if row is None else None
        if legacy is not None and legacy.status == PENDING:
            row = legacy  # an older version's attempt of this run: it is the one to re-send
        current = None if row is None else row.status
        if row is not None and current == PENDING and row.idem_key:
            if row.body is None:  # written by version 1: its key, and from now on this body
                db.execute(
                    "UPDATE runs SET body = ? WHERE key = ? AND job = ?", (body, row.key, job)
                )
            return Intent(sha256=row.sha256, idem_key=row.idem_key, body=row.body or body)
        _moving(PENDING, current)
        # The key is the identity itself: every attempt of it, in any process, sends it.
        db.execute(
            "INSERT INTO runs (key, job, sha256, run_id, status, credits, attempts, updated_at, "
            "idem_key, body) VALUES (?, ?, ?, NULL, ?, NULL, 0, ?, ?, ?) "
            "ON CONFLICT (key, job) DO UPDATE SET sha256 = excluded.sha256, run_id = NULL, "
            "status = excluded.status, credits = NULL, attempts = runs.attempts + 1, "
            "updated_at = excluded.updated_at, idem_key = excluded.idem_key, body = excluded.body",
            (key, job, sha256, PENDING, _now(), key, body),
        )
    return Intent(sha256=sha256, idem_key=key, body=body)


def _settle_run(job: str, idem_key: str, state: str, run: Run | None) -> None:
    """Move the pending attempt ``idem_key`` (in whichever row holds it: a version-2 one is
    named by its source) to ``state``; any other row is left alone."""
    sources = sorted(s for s, moves in _MOVES.items() if s is not None and state in moves)
    marks = ", ".join("?" * len(sources))
    credits = None if run is None else str(run.usage.credits)
    with _db() as db:
        db.execute(
            "UPDATE runs SET status = ?, run_id = ?, credits = ?, updated_at = ? "
            f"WHERE job = ? AND idem_key = ? AND status IN ({marks})",
            (state, None if run is None else run.id, credits, _now(), job, idem_key, *sources),
        )


def _now() -> str:
    return datetime.now(UTC).isoformat()

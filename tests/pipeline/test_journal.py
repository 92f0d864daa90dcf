"""The journal on its own: what it remembers, its keys, and its lock."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest

from gateway_async import (
    APIConnectionError,
    APIStatusError,
    BadRequestError,
    ConflictError,
    GatewayError,
    MediaRef,
    RateLimitError,
    ServerError,
    UnprocessableEntityError,
)
from gateway_async._journal import Recall, _run_key
from gateway_async.models import Run, RunUsage
from gateway_async.pipeline import Journal, JournalLockedError

JOB = "demo-image-embed\0index\0test"
MEDIA = MediaRef(media_ref="mref_1", size=3, content_type="image/png", sha256="aa", filename="a")


async def test_an_unknown_identity_is_recalled_empty(tmp_path: Path) -> None:
    """A fresh journal knows nothing of a run, nor of a content."""
    async with await Journal.open(tmp_path / "j.db") as journal:
        known = await journal.recall("k", JOB, "aa")
        media = await journal.media_for("aa")
    assert (known.done, known.pending, media) == (False, None, None)


async def test_remembered_media_is_recalled_by_content(tmp_path: Path) -> None:
    async with await Journal.open(tmp_path / "j.db") as journal:
        await journal.remember(MEDIA)
        assert await journal.media_for("aa") == MEDIA
        assert await journal.media_for("bb") is None


def a_run(status: str) -> Run:
    return Run(
        id="run_1",
        model="demo-image-embed",
        mode="index",
        status=status,
        output={},
        usage=RunUsage(credits=Decimal("0.0010"), duration_ms=1),
        created_at=datetime.now(UTC),
    )


def status_error(cls: type[APIStatusError], status: int) -> APIStatusError:
    return cls("refused", status_code=status, code="x")


async def _recall(journal: Journal, key: str = "k") -> Recall:
    return await journal.recall(key, JOB, "aa")


async def test_a_succeeded_run_marks_that_identity_done(tmp_path: Path) -> None:
    """Done is per identity: a success of one does not cover another."""
    async with await Journal.open(tmp_path / "j.db") as journal:
        intent = await journal.begin_run("k", JOB, "aa", '{"b":1}')
        await journal.settle_run("k", JOB, intent, a_run("succeeded"))
        known = await _recall(journal)
        other = await _recall(journal, "k2")
    assert (known.done, known.pending) == (True, None)
    assert not other.done


async def test_an_attempt_is_written_ahead_and_resent_as_written(tmp_path: Path) -> None:
    """begin_run stores the key with the exact body; while its outcome is unknown, every
    later begin_run (this process or the next) gets that body back, not the new one."""
    path = tmp_path / "j.db"
    async with await Journal.open(path) as journal:
        intent = await journal.begin_run("k", JOB, "aa", '{"input":"mref_1"}')
        await journal.settle_run("k", JOB, intent, APIConnectionError("reset"))
    async with await Journal.open(path) as journal:
        known = await _recall(journal)
        again = await journal.begin_run("k", JOB, "aa", '{"input":"mref_2"}')
    assert known.pending == again == intent
    assert again.body == '{"input":"mref_1"}'
    assert intent.idem_key == "k"  # the identity is the key, in every process


@pytest.mark.parametrize(
    "outcome",
    [
        APIConnectionError("reset after sending"),
        status_error(ServerError, 503),
        status_error(ConflictError, 409),  # a run with this key exists: never a new body
        status_error(RateLimitError, 429),
    ],
    ids=["lost", "5xx", "409", "429"],
)
async def test_an_unknown_outcome_keeps_the_key_and_body(
    tmp_path: Path, outcome: Exception
) -> None:
    async with await Journal.open(tmp_path / "j.db") as journal:
        intent = await journal.begin_run("k", JOB, "aa", "{}")
        await journal.settle_run("k", JOB, intent, outcome)
        assert await journal.begin_run("k", JOB, "aa", '{"new":1}') == intent


@pytest.mark.parametrize(
    "outcome",
    [a_run("failed"), status_error(UnprocessableEntityError, 422)],
    ids=["failed", "rejected"],
)
async def test_a_finished_attempt_is_sent_again_under_its_identity(
    tmp_path: Path, outcome: Any
) -> None:
    """A run that failed, or a request surely never executed, is tried again with the new
    body, under the same key: the identity (a failed run's replay costs nothing)."""
    async with await Journal.open(tmp_path / "j.db") as journal:
        first = await journal.begin_run("k", JOB, "aa", "{}")
        await journal.settle_run("k", JOB, first, outcome)
        second = await journal.begin_run("k", JOB, "aa", '{"new":1}')
    assert second.idem_key == first.idem_key == "k"
    assert second.body == '{"new":1}'


async def test_states_only_move_forward(tmp_path: Path) -> None:
    """A succeeded row is never overwritten: not by a late failure of the same attempt, not
    by a new attempt of the same identity."""
    async with await Journal.open(tmp_path / "j.db") as journal:
        intent = await journal.begin_run("k", JOB, "aa", "{}")
        await journal.settle_run("k", JOB, intent, a_run("succeeded"))
        await journal.settle_run("k", JOB, intent, a_run("failed"))
        await journal.settle_run("k", JOB, intent, status_error(BadRequestError, 400))
        with pytest.raises(GatewayError, match="from succeeded to pending"):
            await journal.begin_run("k", JOB, "aa", "{}")
        assert (await _recall(journal)).done


async def test_a_late_answer_of_a_settled_attempt_changes_nothing(tmp_path: Path) -> None:
    """Only a pending attempt can be settled: a second answer to a settled one is ignored."""
    async with await Journal.open(tmp_path / "j.db") as journal:
        old = await journal.begin_run("k", JOB, "aa", "{}")
        await journal.settle_run("k", JOB, old, status_error(BadRequestError, 400))
        await journal.settle_run("k", JOB, old, a_run("succeeded"))
        known = await _recall(journal)
    assert not known.done


async def test_a_version_1_journal_is_migrated_keeping_its_keys(tmp_path: Path) -> None:
    """An in-flight run of a v1 journal (named by its source) keeps its attempt-derived key
    and is found by content and stage: its attempt is re-sent, never a new one."""
    path = tmp_path / "v1.db"
    db = sqlite3.connect(path)
    with db:
        db.executescript(V1_SCHEMA)
        db.execute("INSERT INTO meta VALUES ('id', 'jid')")
        db.execute(
            "INSERT INTO runs VALUES ('path:/a', ?, 'aa', NULL, 'error', NULL, 2, 't')", (JOB,)
        )
        db.execute("PRAGMA user_version=1")
    db.close()
    async with await Journal.open(path) as journal:
        intent = await journal.begin_run("identity", JOB, "aa", '{"b":1}')
        assert intent.idem_key == _run_key("jid", "path:/a", "aa", JOB, 2)
        assert (await journal.recall("identity", JOB, "aa")).pending == intent
        await journal.settle_run("identity", JOB, intent, a_run("succeeded"))
        assert (await journal.recall("identity", JOB, "aa")).done


V1_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE media (sha256 TEXT PRIMARY KEY, media_ref TEXT NOT NULL, size INTEGER NOT NULL,
    content_type TEXT NOT NULL, filename TEXT);
CREATE TABLE sources (key TEXT PRIMARY KEY, path TEXT, size INTEGER, mtime_ns INTEGER,
    sha256 TEXT NOT NULL);
CREATE TABLE runs (key TEXT NOT NULL, job TEXT NOT NULL, sha256 TEXT NOT NULL, run_id TEXT,
    status TEXT NOT NULL, credits TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL, PRIMARY KEY (key, job));
"""


async def test_the_journal_id_is_stable_across_reopening_and_differs_between_journals(
    tmp_path: Path,
) -> None:
    """Without a job, the journal's id stands for one (its keys' namespace)."""
    ids = []
    for name in ("a.db", "a.db", "b.db"):
        async with await Journal.open(tmp_path / name) as journal:
            ids.append(journal.id)
    assert ids[0] == ids[1] != ids[2]


async def test_a_second_journal_on_the_same_file_is_refused(tmp_path: Path) -> None:
    """Within one process too: the lock is per open journal; closing frees it."""
    async with await Journal.open(tmp_path / "j.db"):
        with pytest.raises(JournalLockedError, match="in use"):
            await Journal.open(tmp_path / "j.db")
    async with await Journal.open(tmp_path / "j.db"):
        pass


async def test_another_process_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    """A second process gets JournalLockedError naming the journal."""
    path = tmp_path / "j.db"
    code = (
        "import asyncio, sys\n"
        "from gateway_async.pipeline import Journal, JournalLockedError\n"
        "try:\n"
        f"    asyncio.run(Journal.open({str(path)!r}))\n"
        "except JournalLockedError as exc:\n"
        "    print(type(exc).__name__, exc); sys.exit(3)\n"
    )
    async with await Journal.open(path):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
    assert proc.returncode == 3
    assert out.decode().startswith(f"JournalLockedError journal {path} is in use")


async def test_close_waits_for_queued_writes_and_stops_the_thread(tmp_path: Path) -> None:
    """Writes queued before close land; no journal thread is left running."""
    journal = await Journal.open(tmp_path / "j.db")
    writes = [
        asyncio.ensure_future(journal.remember(attrs.evolve(MEDIA, sha256=f"{i}")))
        for i in range(50)
    ]
    await asyncio.sleep(0)
    await journal.aclose()
    await asyncio.gather(*writes)
    assert not [t for t in threading.enumerate() if t.name.startswith("gateway-journal")]
    async with await Journal.open(tmp_path / "j.db") as again:
        assert (await again.media_for("49")).sha256 == "49"  # type: ignore[union-attr]
    with pytest.raises(GatewayError, match="closed"):
        await journal.media_for("1")

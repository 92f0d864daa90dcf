"""The journal on its own: what it remembers, its keys, and its lock."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import attrs
import pytest

from gateway_async import GatewayError, MediaRef
from gateway_async._journal import RunRecord
from gateway_async._pipeline._sources import Identity
from gateway_async.pipeline import Journal, JournalLockedError

JOB = "demo-image-embed\0index\0test"
MEDIA = MediaRef(media_ref="mref_1", size=3, content_type="image/png", sha256="aa", filename="a")
STAT = Identity(key="path:/a", path="/a", size=3, mtime_ns=7)


async def test_an_unknown_source_is_recalled_empty(tmp_path: Path) -> None:
    """A fresh journal knows nothing of a source."""
    async with await Journal.open(tmp_path / "j.db") as journal:
        known = await journal.recall("path:/a", JOB, size=3, mtime_ns=7, sha256=None)
    assert (known.sha256, known.media, known.attempts) == (None, None, 0)


async def test_remembered_media_is_recalled_while_the_file_is_unchanged(tmp_path: Path) -> None:
    """Same size and mtime: the hash and upload are known; changed: they are not."""
    async with await Journal.open(tmp_path / "j.db") as journal:
        await journal.remember("path:/a", STAT, MEDIA)
        same = await journal.recall("path:/a", JOB, size=3, mtime_ns=7, sha256=None)
        touched = await journal.recall("path:/a", JOB, size=3, mtime_ns=8, sha256=None)
        by_content = await journal.media_for("aa")
    assert (same.sha256, same.media) == ("aa", MEDIA)
    assert (touched.sha256, touched.media) == (None, None)
    assert by_content == MEDIA


async def test_a_succeeded_run_marks_that_content_done(tmp_path: Path) -> None:
    """Done is per content: a success on old content does not cover new content."""
    async with await Journal.open(tmp_path / "j.db") as journal:
        await journal.record_run(RunRecord(key="k", job=JOB, sha256="aa", status="succeeded"))
        known = await journal.recall("k", JOB, size=None, mtime_ns=None, sha256="aa")
    assert known.done("aa")
    assert not known.done("bb")


async def test_only_a_finished_failure_moves_to_a_new_key(tmp_path: Path) -> None:
    """Final failures bump the attempt (new key); maybe-executed errors keep the key."""
    async with await Journal.open(tmp_path / "j.db") as journal:
        keys = [journal.run_key("k", "aa", JOB, 0)]
        await journal.record_run(RunRecord(key="k", job=JOB, sha256="aa", status="error"))
        keys.append(journal.run_key("k", "aa", JOB, await _attempts(journal)))
        await journal.record_run(
            RunRecord(key="k", job=JOB, sha256="aa", status="failed", final_failure=True)
        )
        keys.append(journal.run_key("k", "aa", JOB, await _attempts(journal)))
    assert keys[0] == keys[1] != keys[2]


async def _attempts(journal: Journal) -> int:
    return (await journal.recall("k", JOB, size=None, mtime_ns=None, sha256="aa")).attempts


async def test_keys_are_stable_across_reopening_and_differ_between_journals(
    tmp_path: Path,
) -> None:
    """The journal id seeds the keys: same file, same key; another journal, another key."""
    keys = []
    for name in ("a.db", "a.db", "b.db"):
        async with await Journal.open(tmp_path / name) as journal:
            keys.append(journal.run_key("k", "aa", JOB, 0))
    assert keys[0] == keys[1] != keys[2]


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
        asyncio.ensure_future(
            journal.remember(
                f"k{i}", attrs.evolve(STAT, path=f"/{i}"), attrs.evolve(MEDIA, sha256=f"{i}")
            )
        )
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

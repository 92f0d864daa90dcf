"""The journal is a cache of identities, bound to one Gateway, workspace and job; a journal
that cannot be used fails typed, in one line, leaving nothing behind (issue #20, defects 1,
4, 7 and 8)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway_async import (
    Gateway,
    GatewayError,
    JournalError,
    JournalLockedError,
    JournalMismatchError,
    testing,
)
from gateway_async._pipeline import _engine
from gateway_async.cli.main import main
from gateway_async.emulator import Emulator
from gateway_async.emulator._png import encode
from gateway_async.pipeline import IngestItem, Journal

MODEL, SCOPE = "demo-image-embed", "test"


def images(folder: Path, n: int, salt: str = "") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        paths.append(folder / f"img{i:03d}.png")
        paths[-1].write_bytes(encode(2, 2, hashlib.sha256(f"{salt}{i}".encode()).digest()[:12]))
    return paths


async def collect(gw: Gateway, sources: Any, **options: Any) -> list[IngestItem]:
    options = {"model": MODEL, "scope": SCOPE, **options}
    return await asyncio.wait_for(_all(gw.ingest(sources, **options)), 60)


async def _all(ingest: Any) -> list[IngestItem]:
    return [item async for item in ingest]


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- defect 1: the file changes while the journal hashes it ----------------------------------


async def test_a_file_changed_while_hashed_is_run_on_what_was_sent_and_only_once(
    emu: Emulator, gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first byte and the mtime change right after the journal hashed the file, then it
    stays: the upload sends the new bytes, the run is named by them, and a rerun executes
    nothing (it used to keep the old hash for the run: two executions, two index items)."""
    path = images(tmp_path / "photos", 1)[0]
    hash_first = _engine.content_sha256
    edited: list[bytes] = []

    async def hash_then_edit(source: Any, identity: Any) -> Any:
        hashed = await hash_first(source, identity)
        if not edited:
            edited.append(path.read_bytes())
            path.write_bytes(encode(3, 3, bytes(27)))  # other bytes from now on
        return hashed

    monkeypatch.setattr(_engine, "content_sha256", hash_then_edit)
    journal = tmp_path / "j.db"
    first = await collect(gateway, [path], journal=journal)
    again = await collect(gateway, [path], journal=journal)
    assert first[0].ok
    assert again[0].skipped
    sent = hashlib.sha256(path.read_bytes()).hexdigest()
    assert first[0].media_ref is not None
    assert first[0].media_ref.sha256 == sent
    assert (emu.stats.executions, emu.stats.index_size(MODEL, SCOPE)) == (1, 1)


# -- defect 4: a journal bound to nothing ------------------------------------------------------


async def test_a_journal_of_another_gateway_is_refused_before_any_upload_or_run(
    emu: Emulator, tmp_path: Path
) -> None:
    """Written against "staging", reused against "production": JournalMismatchError naming
    both, before any upload or run there (it used to skip every item, or 422 on each)."""
    files = images(tmp_path / "photos", 3)
    journal = tmp_path / "j.db"
    async with emu.client(retry=testing.FAST_RETRY) as staging:
        assert all(item.ok for item in await collect(staging, files, journal=journal))
    async with Emulator() as production, production.client() as gw:
        with pytest.raises(JournalMismatchError) as info:
            await collect(gw, files, journal=journal)
        routes = production.stats.requests_by_route
        assert not [route for route in routes if "upload" in route or "runs" in route]
    assert isinstance(info.value, GatewayError)
    assert emu.base_url in str(info.value)
    assert production.base_url in str(info.value)


async def test_a_journal_of_another_job_is_refused(
    emu: Emulator, gateway: Gateway, tmp_path: Path
) -> None:
    files = images(tmp_path / "photos", 2)
    journal = tmp_path / "j.db"
    await collect(gateway, files, journal=journal, job="photos-2026-12")
    with pytest.raises(JournalMismatchError, match="photos-2026-11"):
        await collect(gateway, files, journal=journal, job="photos-2026-11")
    again = await collect(gateway, files, journal=journal, job="photos-2026-12")
    assert all(item.skipped for item in again)


# -- defect 7: damaged journals ----------------------------------------------------------------


async def test_a_file_that_is_not_a_journal_is_refused_typed_and_untouched(
    emu: Emulator, gateway: Gateway, tmp_path: Path
) -> None:
    """``--journal photos/img000.png``: JournalError naming the path; no .lock, no -wal,
    the photo unchanged."""
    folder = tmp_path / "photos"
    files = images(folder, 2)
    before = files[0].read_bytes()
    with pytest.raises(JournalError, match=r"img000\.png") as info:
        await collect(gateway, files, journal=files[0])
    assert "new file" in str(info.value)
    assert info.value.path == str(files[0])
    assert listing(folder) == ["img000.png", "img001.png"]
    assert files[0].read_bytes() == before
    assert emu.stats.executions == 0


async def test_a_truncated_journal_is_refused_typed(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with await Journal.open(path) as journal:
        for i in range(200):
            await journal.begin_run(f"k{i}", "job", "aa", "{}" * 50)
    data = path.read_bytes()
    for name in ("j.db-wal", "j.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(JournalError, match=r"j\.db"):
        await use(path)


async def use(path: Path) -> None:
    async with await Journal.open(path) as journal:
        await journal.recall("k199", "job", "aa")
        await journal.begin_run("k300", "job", "aa", "{}")


async def test_a_full_disk_is_a_journal_error_and_leaves_no_file(tmp_path: Path) -> None:
    """``ulimit -f``: writing fails with EFBIG (Python ignores SIGXFSZ): JournalError, and
    the journal this open created is removed again."""
    path = tmp_path / "j.db"
    code = (
        "import asyncio, resource, sys\n"
        "from gateway_async import JournalError\n"
        "from gateway_async.pipeline import Journal\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))\n"
        "try:\n"
        f"    asyncio.run(Journal.open({str(path)!r}))\n"
        "except JournalError as exc:\n"
        "    print(type(exc).__name__, exc); sys.exit(3)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 3, err.decode()
    assert out.decode().startswith(f"JournalError journal {path} cannot be used")
    assert "free disk space" in out.decode()
    assert listing(tmp_path) == []


def test_the_cli_prints_one_line_and_exits_2_for_a_photo_as_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "photos"
    files = images(folder, 2)

    async def run() -> int:
        async with Emulator() as emulator:
            argv = [
                *("--base-url", emulator.base_url, "--api-key", emulator.api_key),
                *("index", str(folder), "--model", MODEL, "--scope", SCOPE),
                *("--journal", str(files[0])),
            ]
            return await asyncio.to_thread(main, argv)

    assert asyncio.run(run()) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "img000.png" in err
    assert "--journal" in err  # the flag the user typed
    assert listing(folder) == ["img000.png", "img001.png"]


# -- defect 8: the lock is taken on the file's real identity -----------------------------------


@pytest.mark.parametrize("link", ["symlink", "hard link"])
async def test_two_names_of_one_journal_share_its_lock(tmp_path: Path, link: str) -> None:
    path = tmp_path / "j.db"
    other = tmp_path / "other-name.db"
    async with await Journal.open(path):
        if link == "symlink":
            other.symlink_to(path)
        else:
            os.link(path, other)
        with pytest.raises(JournalLockedError, match="in use"):
            await Journal.open(other)
    async with await Journal.open(other):
        pass
    assert not [name for name in listing(tmp_path) if name.endswith(".lock")]


async def test_two_ingests_through_a_symlink_do_not_both_run(
    emu: Emulator, gateway: Gateway, tmp_path: Path
) -> None:
    """Two ingests of 40 files on one journal through a symlink: while the first runs, the
    second is refused (both used to run: 79-80 uploads, internal state-move errors)."""
    files = images(tmp_path / "photos", 40)
    path = tmp_path / "j.db"
    link = tmp_path / "link.db"
    link.symlink_to(path)
    first = gateway.ingest(files, model=MODEL, scope=SCOPE, journal=path)
    async with first:
        items = [await anext(first)]  # the first holds its journal from here on
        with pytest.raises(JournalLockedError, match="in use"):
            await collect(gateway, files, journal=link)
        items += [item async for item in first]
    assert len(items) == 40
    assert all(item.ok for item in items)
    assert emu.stats.uploads_completed == 40
    assert emu.stats.executions == 40


# -- the upload's resume journal follows the same rule -----------------------------------------


@pytest.mark.parametrize("case", ["damaged file", "missing folder", "a directory"])
async def test_an_upload_journal_that_cannot_be_used_is_a_journal_error(
    tmp_path: Path, case: str
) -> None:
    """``gw.media.upload(journal=)`` of a multipart-sized file: typed, never a raw sqlite3
    error (found by the adversarial review after issue 20 landed)."""
    mib = 1024 * 1024
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 * mib))
    journal = {
        "damaged file": tmp_path / "bad.db",
        "missing folder": tmp_path / "nope" / "j.db",
        "a directory": tmp_path,
    }[case]
    if case == "damaged file":
        journal.write_bytes(b"garbage" * 1000)
    async with (
        Emulator(multipart_threshold=5 * mib, multipart_part_size=5 * mib) as emulator,
        emulator.client() as gw,
    ):
        with pytest.raises(JournalError) as info:
            await gw.media.upload(big, journal=journal)
    assert info.value.path == str(journal)
    assert "journal" in str(info.value)
    assert info.value.__cause__ is None

"""Where small files are read: on the loop while the kernel serves them at once, else in
the client's file thread; every route gives the same bytes and the same checks."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from gateway_async import Gateway, UploadError
from gateway_async._upload import files
from tests.conftest import TEST_KEY
from tests.uploads.conftest import UploadServers, quick_retries

DATA = os.urandom(300 * 1024)
SMALL = DATA[: 100 * 1024]


def small_file(tmp_path: Path, data: bytes = SMALL, name: str = "small.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.fixture
def nowait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop route needs RWF_NOWAIT (Linux), and ``tmp_path``'s filesystem may lack it
    (tmpfs answers EOPNOTSUPP): there a plain read of the just-written file stands in."""
    if files.NOWAIT is None:
        pytest.skip("RWF_NOWAIT is Linux-only")
    probe = small_file(tmp_path, b"probe", "probe.bin")
    fd = os.open(probe, os.O_RDONLY)
    try:
        os.preadv(fd, [bytearray(5)], 0, files.NOWAIT)
    except OSError as exc:
        if exc.errno != errno.EOPNOTSUPP:
            raise
        real = os.preadv
        monkeypatch.setattr(os, "preadv", lambda fd, bufs, offset, flags=0: real(fd, bufs, offset))
    finally:
        os.close(fd)


def local_files(gw: Gateway) -> files.LocalFiles:
    return gw._storage.files


async def upload_and_check(
    servers: UploadServers, gw: Gateway, path: Path, data: bytes = SMALL
) -> None:
    ref = await gw.media.upload(path)
    assert ref.sha256 == hashlib.sha256(data).hexdigest()
    assert servers.stored[ref.media_ref.removeprefix("mref_")] == data


def preadv_failing(error: BaseException | None = None, short: bool = False) -> Any:
    real = os.preadv

    def fake(fd: int, buffers: list[bytearray], offset: int, flags: int = 0) -> int:
        if error is not None:
            raise error
        got = real(fd, buffers, offset, flags)
        return got - 1 if short else got

    return fake


@pytest.mark.usefixtures("nowait")
async def test_cached_small_file_is_read_on_the_loop(
    servers: UploadServers, gw: Gateway, tmp_path: Path
) -> None:
    """A file in the page cache never goes near the file thread (it is not even started)."""
    await upload_and_check(servers, gw, small_file(tmp_path))
    assert local_files(gw).on_loop
    assert local_files(gw)._pool is None


@pytest.mark.usefixtures("nowait")
@pytest.mark.parametrize(
    ("answer", "stays_on_loop"),
    [("would block", True), ("partly cached", True), ("not supported", False)],
    ids=["not cached", "partly cached", "filesystem without RWF_NOWAIT"],
)
async def test_a_read_that_would_wait_goes_to_the_thread(
    servers: UploadServers,
    gw: Gateway,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    stays_on_loop: bool,
) -> None:
    """The loop never waits for the disk: the file is read again in the thread, byte-exact."""
    fake = {
        "would block": preadv_failing(BlockingIOError(errno.EAGAIN, "would block")),
        "partly cached": preadv_failing(short=True),
        "not supported": preadv_failing(OSError(errno.EOPNOTSUPP, "not supported")),
    }[answer]
    monkeypatch.setattr(os, "preadv", fake)
    await upload_and_check(servers, gw, small_file(tmp_path))
    assert local_files(gw)._pool is not None
    assert local_files(gw).on_loop is stays_on_loop


@pytest.mark.usefixtures("nowait")
async def test_slow_opens_in_a_row_move_the_client_to_its_thread(
    servers: UploadServers, gw: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A network filesystem or a cold disk: after SLOW_OPENS slow opens in a row, the loop
    is spared; the files up to then were read already."""
    monkeypatch.setattr(files, "SLOW_OPEN", -1.0)  # every open counts as slow
    for n in range(files.SLOW_OPENS):
        assert local_files(gw).on_loop
        await upload_and_check(servers, gw, small_file(tmp_path, name=f"slow{n}.bin"))
    assert not local_files(gw).on_loop
    assert local_files(gw)._pool is None
    await upload_and_check(servers, gw, small_file(tmp_path, name="next.bin"))
    assert local_files(gw)._pool is not None


@pytest.mark.usefixtures("nowait")
async def test_a_fast_open_forgives_earlier_slow_ones(
    servers: UploadServers, gw: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One slow open (the VM paused, a cold directory) must not demote a client for good."""
    for n in range(3 * files.SLOW_OPENS):
        slow = n % files.SLOW_OPENS != files.SLOW_OPENS - 1  # every third open is fast
        monkeypatch.setattr(files, "SLOW_OPEN", -1.0 if slow else 3600.0)
        await upload_and_check(servers, gw, small_file(tmp_path, name=f"f{n}.bin"))
    assert local_files(gw).on_loop
    assert local_files(gw)._pool is None


async def test_without_rwf_nowait_files_are_read_in_the_thread(
    servers: UploadServers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """macOS, Windows, old kernels: every small file is checked and read in one thread trip."""
    monkeypatch.setattr(files, "NOWAIT", None)
    async with Gateway(api_key=TEST_KEY, base_url=servers.api_url) as gw:
        assert not local_files(gw).on_loop
        await upload_and_check(servers, gw, small_file(tmp_path))
        assert local_files(gw)._pool is not None


@pytest.mark.parametrize("field", ["st_mtime_ns", "st_ctime_ns"])
@pytest.mark.parametrize("on_loop", [True, False], ids=["on the loop", "in the thread"])
async def test_a_small_file_changed_while_read_is_refused_before_any_request(
    servers: UploadServers,
    gw: Gateway,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    on_loop: bool,
    request: pytest.FixtureRequest,
    field: str,
) -> None:
    """The snapshot is only sent when size, mtime and ctime after the read match those
    before (a writer that puts the mtime back still moves the ctime)."""
    if on_loop:
        request.getfixturevalue("nowait")
    local_files(gw).on_loop = on_loop
    real, seen = os.fstat, set()

    def fstat(fd: int) -> os.stat_result:
        info = real(fd)
        if fd not in seen:
            seen.add(fd)
            return info
        # The check after the read sees one newer time, as if a writer had been at work
        # (every *_ns given: stat_result would not derive the others exactly).
        times = {f"st_{t}time_ns": getattr(info, f"st_{t}time_ns") for t in "amc"}
        return os.stat_result(tuple(info), {**times, field: getattr(info, field) + 1})

    monkeypatch.setattr(os, "fstat", fstat)
    with pytest.raises(UploadError, match="changed while it was being read"):
        await gw.media.upload(small_file(tmp_path))
    assert servers.inits == []


async def test_hash_of_a_large_whole_file_overlaps_the_init(
    servers: UploadServers, gw: Gateway, tmp_path: Path
) -> None:
    """From 256 KiB, a file read whole is hashed in the file thread while init is sent;
    the digest reaches complete, and a retried PUT reuses it."""
    gw._transport.retry = quick_retries(1)
    servers.behaviours = ["503"]
    await upload_and_check(servers, gw, small_file(tmp_path, DATA, "larger.bin"), DATA)
    assert servers.behaviours == []  # the 503 was answered, then the PUT was sent again
    digest = hashlib.sha256(DATA).hexdigest()
    assert servers.completes == [{"upload_id": "upl_1", "sha256": digest}]
    assert local_files(gw)._pool is not None


async def test_short_reads_in_the_thread_are_completed(
    servers: UploadServers, gw: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A network filesystem may answer a read with fewer bytes than asked: keep reading."""
    local_files(gw).on_loop = False
    real = os.read

    def short(fd: int, n: int) -> bytes:
        return real(fd, min(n, 7000))

    monkeypatch.setattr(os, "read", short)
    await upload_and_check(servers, gw, small_file(tmp_path))

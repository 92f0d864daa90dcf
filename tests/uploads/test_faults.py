"""Retries and faults: resets, 5xx, expired URLs, stalls, torn sources, cancellation."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

from gateway_async import Gateway, Timeouts, UploadError
from tests.conftest import TEST_KEY
from tests.uploads.conftest import UploadServers, quick_retries, threads_left

DATA = os.urandom(6 * 1024 * 1024)
DIGEST = hashlib.sha256(DATA).hexdigest()


@pytest.mark.parametrize("size", [len(DATA), 100 * 1024], ids=["streamed", "read whole"])
@pytest.mark.parametrize("fault", ["reset", "503", "500", "429", "408"])
async def test_failed_put_is_resent_from_byte_zero(
    servers: UploadServers, gw: Gateway, tmp_path: Path, fault: str, size: int
) -> None:
    """After a reset mid-body or a retryable status, the whole file is sent again,
    byte-exact, and complete runs exactly once."""
    path = tmp_path / "f.bin"
    path.write_bytes(DATA[:size])
    digest = hashlib.sha256(DATA[:size]).hexdigest()
    servers.behaviours = [fault]
    ref = await gw.media.upload(path)
    assert [p.sha256 for p in servers.puts] == [digest]
    assert servers.completes == [{"upload_id": "upl_1", "sha256": digest}]
    assert ref.sha256 == digest
    assert len(servers.inits) == 1


async def test_s3_request_timeout_400_is_retried(servers: UploadServers, gw: Gateway) -> None:
    """S3 answers a slow body with 400 RequestTimeout; that one is worth a retry."""

    async def s3_timeout(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(status=400, text="<Error><Code>RequestTimeout</Code></Error>")

    servers.behaviours = [s3_timeout]
    await gw.media.upload(DATA)
    assert len(servers.completes) == 1


async def test_plain_400_is_not_retried(servers: UploadServers, gw: Gateway) -> None:
    """Other storage 4xx answers fail at once with the storage's status."""
    servers.behaviours = ["400"]
    with pytest.raises(UploadError, match="HTTP 400") as info:
        await gw.media.upload(DATA)
    assert info.value.status_code == 400
    assert servers.completes == []


async def test_retries_give_up_after_the_policy(servers: UploadServers, gw: Gateway) -> None:
    """Three 503s with max_retries=2: the upload fails, complete never runs."""
    servers.behaviours = ["503", "503", "503", "ok"]
    with pytest.raises(UploadError, match="HTTP 503"):
        await gw.media.upload(DATA)
    assert servers.completes == []


@pytest.mark.parametrize("status", ["403", "410"])
async def test_refused_signature_triggers_one_fresh_init(
    servers: UploadServers, gw: Gateway, status: str
) -> None:
    """A 403/410 from storage (expired or refused signature) gets one new init."""
    servers.behaviours = [status]
    await gw.media.upload(DATA)
    assert len(servers.inits) == 2
    assert servers.completes == [{"upload_id": "upl_2", "sha256": DIGEST}]


async def test_second_refusal_gives_up(servers: UploadServers, gw: Gateway) -> None:
    """Refused again after the fresh init: a clear UploadError, no complete."""
    servers.behaviours = ["403", "403"]
    with pytest.raises(UploadError, match="refused again"):
        await gw.media.upload(DATA)
    assert len(servers.inits) == 2
    assert servers.completes == []


async def test_expired_at_complete_reinits_and_resends(servers: UploadServers, gw: Gateway) -> None:
    """410 upload_expired at complete: fresh init, PUT again, complete again."""
    servers.complete_statuses = [410]
    ref = await gw.media.upload(DATA)
    assert len(servers.inits) == 2
    assert [c["upload_id"] for c in servers.completes] == ["upl_1", "upl_2"]
    assert ref.media_ref == "mref_upl_2"


async def test_async_iterable_is_not_retried(servers: UploadServers, gw: Gateway) -> None:
    """An async iterable cannot be re-read: the error says so, and nothing completes."""

    async def stream() -> AsyncIterator[bytes]:
        yield DATA

    servers.behaviours = ["503"]
    with pytest.raises(UploadError, match="cannot be re-read"):
        await gw.media.upload(stream(), size=len(DATA))
    assert servers.completes == []


def grow(path: Path) -> None:
    with path.open("ab") as handle:
        handle.write(b"more data appended by another writer")


def touch(path: Path) -> None:
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))


def rewrite_keeping_mtime(path: Path) -> None:
    """What ``rsync --inplace -t`` does: new bytes in place, the old mtime put back."""
    info = path.stat()
    with path.open("r+b") as handle:
        handle.seek(info.st_size - 4096)
        handle.write(b"\xff" * 4096)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (info.st_size, info.st_mtime_ns)


def rename(path: Path) -> None:
    path.rename(path.with_suffix(".moved"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (grow, r"more bytes|changed"),
        (touch, "changed"),
        (rewrite_keeping_mtime, "rewritten"),
        (rename, "moved or removed"),
    ],
    ids=["grows", "same size, new mtime", "rewritten in place, mtime set back", "renamed"],
)
async def test_file_changing_mid_upload_fails_without_complete(
    servers: UploadServers,
    gw: Gateway,
    tmp_path: Path,
    change: Callable[[Path], None],
    message: str,
) -> None:
    """A file that changes while it streams is a torn copy: refused, complete never called."""
    path = tmp_path / "changing.bin"
    path.write_bytes(DATA)

    async def change_then_read(request: web.Request) -> web.StreamResponse:
        await request.content.readexactly(1024)
        change(path)
        await request.read()
        return web.Response(status=200)

    servers.behaviours = [change_then_read]
    gw._transport.retry = quick_retries(0)
    with pytest.raises(UploadError, match=message):
        await gw.media.upload(path)
    assert servers.completes == []
    # Cleaned up when the upload fails, not whenever a generator is garbage-collected.
    assert str(path) not in open_files()
    assert not threads_left("gateway-read")
    assert not threads_left("gateway-hash")


# More than loopback's socket buffers can hold: a storage that reads nothing stops it moving.
UNDELIVERABLE = 32 * 1024 * 1024


async def test_stalled_put_is_abandoned_and_retried(servers: UploadServers) -> None:
    """No progress for stall_timeout: the attempt is dropped and the next one succeeds."""
    servers.behaviours = ["hang"]
    async with Gateway(
        api_key=TEST_KEY,
        base_url=servers.api_url,
        retry=quick_retries(),
        upload_stall_timeout=0.3,
    ) as gw:
        ref = await gw.media.upload(bytes(UNDELIVERABLE))
    assert ref.media_ref == "mref_upl_1"
    assert len(servers.puts) == 1


async def test_stall_without_retries_is_a_clear_error(servers: UploadServers) -> None:
    """With no retries left, the stall surfaces as a retryable UploadError."""
    servers.behaviours = ["hang"]
    async with Gateway(
        api_key=TEST_KEY, base_url=servers.api_url, max_retries=0, upload_stall_timeout=0.2
    ) as gw:
        with pytest.raises(UploadError, match="stalled") as info:
            await gw.media.upload(bytes(UNDELIVERABLE))
    assert info.value.retryable


async def test_a_small_body_waiting_for_its_answer_is_bounded_by_the_attempt_timeout(
    servers: UploadServers,
) -> None:
    """A body delivered whole (it fits in the socket buffers) is not stalled: storage owes
    an answer, and the attempt timeout bounds that wait (defect 9 of issue #20)."""
    servers.behaviours = ["hang"]
    async with Gateway(
        api_key=TEST_KEY,
        base_url=servers.api_url,
        max_retries=0,
        upload_stall_timeout=0.2,
        timeout=Timeouts(attempt=0.4),
    ) as gw:
        with pytest.raises(UploadError, match="did not answer the PUT") as info:
            await gw.media.upload(b"x")
    assert info.value.retryable


def open_files() -> set[str]:
    """What this process's file descriptors point at (sockets count by their inode)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.add(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # the fd listing itself, closed meanwhile
            continue
    return found


async def test_cancelling_an_upload_leaks_nothing(servers: UploadServers, tmp_path: Path) -> None:
    """Cancel mid-PUT: the file, its reading thread and the connection close; no task
    outlives it."""
    path = tmp_path / "big.bin"
    path.write_bytes(DATA)
    disconnected = asyncio.Event()

    async def hang_until_disconnect(request: web.Request) -> web.StreamResponse:
        # Keep draining: a server that stops reading never notices the client's FIN.
        try:
            while await request.content.readany():
                pass
            await asyncio.Event().wait()
        finally:
            disconnected.set()  # EOF, reset, or the handler cancelled on connection loss
        raise AssertionError("unreachable")

    servers.behaviours = [hang_until_disconnect]
    before = open_files()
    async with Gateway(api_key=TEST_KEY, base_url=servers.api_url) as gw:
        task = asyncio.create_task(gw.media.upload(path))
        await servers.put_started.wait()
        assert str(path) in open_files()
        client_sockets = {f for f in open_files() - before if f.startswith("socket:")}
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert str(path) not in open_files()
        assert not threads_left("gateway-read")
        assert not threads_left("gateway-hash")
        await asyncio.wait_for(disconnected.wait(), 5)  # the PUT connection closed promptly
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in leftover if "gateway_async" in repr(t.get_coro())]
    # The client's own sockets (API and storage) are gone once the client is closed; the
    # in-process test servers may still hold their ends, so only new fds count here.
    assert not (open_files() - before - client_sockets)

"""The read-ahead and hashing threads of a streamed upload: bounded, ordered, exact, and
gone when closed."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway_async import Gateway, UploadError
from gateway_async._upload import sources
from gateway_async._upload.readahead import AHEAD, HashBehind, ReadAhead
from tests.uploads.conftest import UploadServers, threads_left


def counting_reads(limit: int | None = None) -> tuple[Callable[[], bytes], list[int]]:
    """A read that returns its call number as bytes (b"" after ``limit`` calls)."""
    calls: list[int] = []

    def read() -> bytes:
        calls.append(len(calls))
        if limit is not None and len(calls) > limit:
            return b""
        return str(len(calls)).encode()

    return read, calls


def reader_threads() -> list[threading.Thread]:
    return threads_left("test-read")


async def test_chunks_arrive_in_order_and_end() -> None:
    read, _ = counting_reads(limit=5)
    reader = ReadAhead(read, name="test-read")
    got = [await reader.next() for _ in range(6)]
    await reader.aclose()
    assert got == [b"1", b"2", b"3", b"4", b"5", b""]
    assert not reader_threads()


async def test_the_thread_reads_at_most_ahead_chunks_before_they_are_taken() -> None:
    """Memory stays bounded however slow the socket: AHEAD reads, then the thread waits."""
    reached = threading.Event()
    read, calls = counting_reads()

    def read_and_signal() -> bytes:
        data = read()
        if len(calls) == AHEAD:
            reached.set()
        return data

    reader = ReadAhead(read_and_signal, name="test-read")
    await asyncio.to_thread(reached.wait)
    await reader.aclose()  # an unbounded reader would have run far past AHEAD by now
    assert len(calls) == AHEAD
    assert not reader_threads()


async def test_aclose_waits_for_a_read_in_progress() -> None:
    """The caller closes the file after aclose: no read may still be running then."""
    entered, release = threading.Event(), threading.Event()

    def slow_read() -> bytes:
        entered.set()
        release.wait()
        return b"chunk"

    reader = ReadAhead(slow_read, name="test-read")
    await asyncio.to_thread(entered.wait)
    closing = asyncio.create_task(reader.aclose())
    for _ in range(5):
        await asyncio.sleep(0)  # let aclose run as far as it can: it must wait
    assert not closing.done()
    release.set()
    await closing
    assert not reader_threads()


async def test_a_failed_read_raises_in_the_reader() -> None:
    def broken() -> bytes:
        raise OSError(5, "Input/output error")

    reader = ReadAhead(broken, name="test-read")
    with pytest.raises(OSError, match="Input/output error"):
        await reader.next()
    await reader.aclose()
    assert not reader_threads()


async def test_a_read_error_mid_upload_fails_it_without_complete(
    servers: UploadServers, gw: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk error on the third chunk fails the upload with a clear error, without a
    retry or a complete, and the reading thread is gone."""
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * (5 * sources.CHUNK_SIZE))
    real, reads = sources._read_chunk, []

    def failing(handle: object, hashing: object) -> bytes:
        reads.append(1)
        if len(reads) >= 3:  # a disk that fails from the third read on, every attempt
            raise OSError(5, "Input/output error")
        return real(handle, hashing)  # type: ignore[arg-type]

    monkeypatch.setattr(sources, "_read_chunk", failing)
    with pytest.raises(UploadError, match=r"reading the source failed \(Input/output error\)"):
        await gw.media.upload(path)
    assert len(reads) == 3  # a disk error is not retried: the same disk would fail again
    assert servers.completes == []
    assert not threads_left("gateway-read")
    assert not threads_left("gateway-hash")


# -- the hashing thread ----------------------------------------------------------------------


class GatedHasher:
    """A sha256 whose updates wait for ``gate`` (a slow hash), counting what it took."""

    def __init__(self) -> None:
        self.real = hashlib.sha256()
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.updates = 0

    def update(self, data: bytes) -> None:
        self.entered.set()
        self.gate.wait()
        self.real.update(data)
        self.updates += 1


@pytest.mark.parametrize("size", [0, 1, sources.CHUNK_SIZE, 3 * sources.CHUNK_SIZE + 7])
async def test_a_hashed_stream_gives_the_digest_of_its_bytes(tmp_path: Path, size: int) -> None:
    """The digest read when the chunks end covers every byte, in order: the hashing thread
    has finished by then, though chunks were yielded before it hashed them."""
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * (size // 256) + b"z" * (size % 256))
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        async with contextlib.aclosing(sources._read_ahead(handle, hasher, "f")) as chunks:
            sent = b"".join([chunk async for chunk in chunks])
        assert sent == path.read_bytes()
    assert hasher.hexdigest() == hashlib.sha256(sent).hexdigest()
    assert not threads_left("gateway-hash")


async def test_the_hash_falls_at_most_ahead_chunks_behind_the_reads() -> None:
    """A slow hash holds the reads back: memory stays bounded however slow sha256 is."""
    hasher = GatedHasher()
    hashing = HashBehind(hasher, name="test-hash")
    fed: list[int] = []

    def feed_many() -> None:
        for n in range(10):
            hashing.feed(b"x" * 10)
            fed.append(n)

    feeding = asyncio.create_task(asyncio.to_thread(feed_many))
    await asyncio.to_thread(hasher.entered.wait)  # the thread holds chunk 0 in update()
    done, _ = await asyncio.wait([feeding], timeout=0.2)
    assert not done  # the feeder waits: chunk 0 in the hash, AHEAD - 1 queued at most
    assert len(fed) <= AHEAD
    hasher.gate.set()
    await asyncio.wait_for(feeding, 10)
    await hashing.finish()
    assert hasher.updates == 10
    assert hasher.real.hexdigest() == hashlib.sha256(b"x" * 100).hexdigest()
    assert not threads_left("test-hash")


async def test_closing_mid_hash_frees_a_blocked_feed_and_ends_the_thread() -> None:
    """An upload cancelled while sha256 lags: the reading thread is not left waiting to
    feed it, and the hashing thread ends without hashing the rest."""
    hasher = GatedHasher()
    hashing = HashBehind(hasher, name="test-hash")

    def feed_nine() -> None:
        for _ in range(9):
            hashing.feed(b"x")

    feeding = asyncio.create_task(asyncio.to_thread(feed_nine))
    await asyncio.to_thread(hasher.entered.wait)
    hashing.stop()
    await asyncio.wait_for(feeding, 10)  # returned, though nothing more was hashed
    hasher.gate.set()
    await hashing.aclose()
    assert hasher.updates == 1  # the chunk in update() when stopped; the rest dropped
    assert not threads_left("test-hash")


async def test_a_failed_hash_raises_at_finish_never_a_partial_digest() -> None:
    class Broken:
        def update(self, data: bytes) -> None:
            raise MemoryError

    hashing = HashBehind(Broken(), name="test-hash")

    def feed_many() -> None:
        for _ in range(3 * AHEAD):  # past the failure, no feed may wait for ever
            hashing.feed(b"x")

    await asyncio.wait_for(asyncio.to_thread(feed_many), 10)
    with pytest.raises(MemoryError):
        await hashing.finish()
    await hashing.aclose()
    assert not threads_left("test-hash")


async def test_a_cancelled_upload_leaves_no_reading_or_hashing_thread(
    servers: UploadServers, gw: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while the hash lags behind the reads: both threads are gone once the
    cancelled call returns, and the file is closed."""
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * (6 * sources.CHUNK_SIZE))
    hasher = GatedHasher()
    monkeypatch.setattr(sources.hashlib, "sha256", lambda: hasher)
    upload = asyncio.create_task(gw.media.upload(path))
    await asyncio.to_thread(hasher.entered.wait)
    upload.cancel()
    hasher.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert not threads_left("gateway-read")
    assert not threads_left("gateway-hash")
    assert servers.completes == []

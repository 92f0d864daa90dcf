"""The read-ahead thread of a streamed upload: bounded, ordered, and gone when closed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway_async import Gateway, UploadError
from gateway_async._upload import sources
from gateway_async._upload.readahead import AHEAD, ReadAhead
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
    real, reads = sources._read_hashed, []

    def failing(handle: object, hasher: object) -> bytes:
        reads.append(1)
        if len(reads) >= 3:  # a disk that fails from the third read on, every attempt
            raise OSError(5, "Input/output error")
        return real(handle, hasher)  # type: ignore[arg-type]

    monkeypatch.setattr(sources, "_read_hashed", failing)
    with pytest.raises(UploadError, match=r"reading the source failed \(Input/output error\)"):
        await gw.media.upload(path)
    assert len(reads) == 3  # a disk error is not retried: the same disk would fail again
    assert servers.completes == []
    assert not threads_left("gateway-read")

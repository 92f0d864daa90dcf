"""Storage that reads slowly, stops reading, answers garbage or echoes the signed URL, and
sources that yield empty chunks (issue #12, defects 9, 10 and 11)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from gateway_async import Gateway, Timeouts, UploadError
from tests.conftest import TEST_KEY
from tests.hostile.raw import InThread, RawServer
from tests.hostile.tls import contexts
from tests.uploads.conftest import UploadServers, quick_retries

KIB = 1024
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
SIGNATURE = "abc%7Edef"  # the X-Sig value of UploadServers.query
STALL = 0.5  # seconds: scaled down from the default 60 s


@pytest_asyncio.fixture
async def raw_storage(servers: UploadServers) -> AsyncIterator[RawServer]:
    """A raw storage listener that the fake Gateway's tickets point at."""
    raw = await RawServer(OK).start()
    servers.storage_url = raw.url
    try:
        yield raw
    finally:
        await raw.close()


def expect_put_of(servers: UploadServers, data: bytes) -> None:
    """The raw storage keeps nothing, so tell the fake Gateway what ``complete`` checks."""
    servers.accept("upl_1", data)


def client(servers: UploadServers, *, stall: float = 60.0, retries: int = 0) -> Gateway:
    return Gateway(
        api_key=TEST_KEY,
        base_url=servers.api_url,
        retry=quick_retries(retries),
        upload_stall_timeout=stall,
    )


def leaked(error: BaseException) -> str:
    """Everything a log line or a traceback of ``error`` would show."""
    return f"{error!r} " + "".join(traceback.format_exception(error))


# -- defect 10: empty chunks -----------------------------------------------------------------


async def test_a_stream_ending_with_an_empty_chunk_uploads(
    servers: UploadServers, gw: Gateway
) -> None:
    """Starlette's request.stream() ends with b""; empty chunks anywhere carry no bytes."""
    parts = [b"", b"abc", b"", bytearray(b"def"), memoryview(b""), b"gh", b""]

    async def stream() -> AsyncIterator[bytes]:
        for part in parts:
            yield part  # type: ignore[misc]

    ref = await gw.media.upload(stream(), size=8, filename="s.bin")
    assert servers.stored["upl_1"] == b"abcdefgh"
    assert ref.sha256 == hashlib.sha256(b"abcdefgh").hexdigest()


# -- defect 11: the signed URL never shows --------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"],
    ids=["not HTTP", "bad Content-Length"],
)
async def test_an_unparsable_storage_answer_hides_the_signature(
    servers: UploadServers, raw_storage: RawServer, answer: bytes
) -> None:
    raw_storage.answer = answer
    async with client(servers) as gw:
        with pytest.raises(UploadError, match="storage PUT failed") as info:
            await gw.media.upload(b"x" * 100)
    assert SIGNATURE not in leaked(info.value)
    assert "X-Amz-Credential" not in leaked(info.value)


async def test_a_storage_error_body_echoing_the_url_is_redacted(
    servers: UploadServers, raw_storage: RawServer
) -> None:
    """S3-style error bodies quote the request; the quote loses the signature."""

    def echo(head: bytes) -> bytes:
        target = head.split(b" ")[1]
        body = b"<Error><Code>InvalidArgument</Code><Resource>" + target + b"</Resource></Error>"
        return b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    raw_storage.answer = echo
    async with client(servers) as gw:
        with pytest.raises(UploadError, match="InvalidArgument") as info:
            await gw.media.upload(b"x" * 100)
    assert SIGNATURE not in leaked(info.value)
    assert "<redacted>" in str(info.value)


# -- defect 9: stalled means no byte moved ----------------------------------------------------


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


@pytest_asyncio.fixture
async def slow_storage(
    servers: UploadServers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Awaitable[RawServer]]]:
    """Starts storage on a thread of its own with a 16 KiB receive buffer, so neither the
    test's loop nor the kernel hides how fast (or whether) it reads; ``tls=True`` serves
    HTTPS with a certificate the client is made to trust."""
    peers: list[InThread] = []

    async def start(
        *, tls: bool = False, default_buffers: bool = False, **options: Any
    ) -> RawServer:
        server_tls = None
        if tls:
            server_tls, client_tls = contexts(tmp_path)
            connector = functools.partial(aiohttp.TCPConnector, ssl=client_tls)
            monkeypatch.setattr(aiohttp, "TCPConnector", connector)
        rcvbuf = None if default_buffers else 16 * KIB
        peers.append(InThread(RawServer(OK, rcvbuf=rcvbuf, tls=server_tls, **options)))
        raw = await peers[-1].start()
        servers.storage_url = raw.url
        return raw

    try:
        yield start
    finally:
        for peer in peers:
            await peer.close()


@pytest.mark.parametrize("kind", ["stream", "bytes", "stream over TLS"])
async def test_a_slow_but_steady_storage_is_not_stalled(
    servers: UploadServers, slow_storage: Callable[..., Awaitable[RawServer]], kind: str
) -> None:
    """~256 KiB/s: the one 384 KiB write takes ~1.5 s, three times the stall timeout, and
    bytes keep moving all along: it uploads.
    Over TLS too, where the bytes wait in the TLS layer's buffers as well."""
    raw = await slow_storage(rate=256 * KIB, tls=kind.endswith("TLS"))
    data = os.urandom(384 * KIB)
    expect_put_of(servers, data)
    source = data if kind == "bytes" else _chunks(data, len(data))
    async with client(servers, stall=STALL) as gw:
        ref = await gw.media.upload(source, size=len(data))
    assert ref.media_ref == "mref_upl_1"
    assert raw.body_sizes == [len(data)]
    assert raw.url.startswith("https" if kind.endswith("TLS") else "http:")


@pytest.mark.parametrize(
    "storage",
    [{"rate": 256 * KIB, "read_ahead": 1024 * KIB}, {"answer_after": 4 * STALL}],
    ids=["taken in at once, read at 256 KiB/s", "slow answer"],
)
async def test_once_the_body_is_delivered_the_wait_for_the_answer_is_not_a_stall(
    servers: UploadServers, slow_storage: Callable[..., Awaitable[RawServer]], storage: Any
) -> None:
    """Issue #20, defect 9: the last bytes sit acknowledged in storage's buffers (or storage
    thinks) for longer than the stall timeout; nothing can move any more, so the attempt
    timeout (120 s by default), not the stall watchdog, bounds the wait for the answer.

    The first storage takes the whole body off the socket at once (default kernel buffers,
    1 MiB read ahead) and reads it at 256 KiB/s, 2.5 s: with asyncio's default 64 KiB, the
    body trickled in 64 KiB steps a quarter of a second apart, too close to the 0.5 s stall
    timeout on a loaded machine (a flake; steady pace is test_a_slow_but_steady_...'s)."""
    raw = await slow_storage(default_buffers=True, **storage)
    data = os.urandom(640 * KIB)
    expect_put_of(servers, data)
    async with client(servers, stall=STALL) as gw:
        ref = await gw.media.upload(_chunks(data, 64 * KIB), size=len(data))
    assert ref.media_ref == "mref_upl_1"
    assert raw.body_sizes == [len(data)]


@pytest.mark.parametrize("kind", ["bytes", "stream"])
async def test_the_attempt_timeout_bounds_the_wait_for_storage_to_answer(
    servers: UploadServers, slow_storage: Callable[..., Awaitable[RawServer]], kind: str
) -> None:
    """A storage that reads everything and never answers fails the attempt at its timeout,
    counted from the body's delivery: not a quarter of the 60 s stall timeout later, when
    the stall guard would next have looked (it did, for 15 s)."""
    await slow_storage(answer_after=None)
    gw = Gateway(
        api_key=TEST_KEY,
        base_url=servers.api_url,
        retry=quick_retries(0),
        upload_stall_timeout=60.0,
        timeout=Timeouts(attempt=STALL),
    )
    data = os.urandom(64 * KIB)
    source = data if kind == "bytes" else _chunks(data, 16 * KIB)
    async with gw:
        with pytest.raises(UploadError, match=r"did not answer the PUT within 0\.5 s") as info:
            await asyncio.wait_for(gw.media.upload(source, size=len(data)), 10 * STALL)
    assert info.value.retryable
    assert servers.completes == []


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_a_storage_that_stops_reading_is_stalled(
    servers: UploadServers, slow_storage: Callable[..., Awaitable[RawServer]], tls: bool
) -> None:
    await slow_storage(read_body=False, tls=tls)
    data = os.urandom(4 * 1024 * KIB)
    async with client(servers, stall=STALL) as gw:
        with pytest.raises(UploadError, match="stalled") as info:
            await gw.media.upload(_chunks(data, 1024 * KIB), size=len(data))
    assert info.value.retryable
    assert servers.completes == []

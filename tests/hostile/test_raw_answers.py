"""Answers aiohttp cannot parse, bodies that blow up a parser, and bodies that inflate to
hundreds of MB: each must reach the caller as a typed GatewayError, never as aiohttp's,
json's or yarl's own exception (issue #12, defects 6 and 8)."""

from __future__ import annotations

import functools
import gzip
import json
import struct
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from gateway_async import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    BadRequestError,
    Gateway,
    GatewayError,
    InvalidRequestError,
    RateLimitError,
    Timeouts,
)
from gateway_async._transport import MAX_RESPONSE_BYTES
from tests.conftest import TEST_KEY, FakeServer, reply
from tests.core.test_transport import RUN, WALLET
from tests.hostile.raw import RawServer

MIB = 1024 * 1024
NESTED = b"[" * 200_000


def http(status: str, *headers: str, body: bytes = b"") -> bytes:
    """An answer as raw bytes: the status line, headers, and the body after a blank line."""
    head = "\r\n".join([status, *headers, f"Content-Length: {len(body)}", "", ""])
    return head.encode("latin-1") + body


@pytest_asyncio.fixture
async def raw() -> AsyncIterator[RawServer]:
    server = await RawServer().start()
    try:
        yield server
    finally:
        await server.close()


def client(url: str) -> Gateway:
    return Gateway(
        api_key=TEST_KEY, base_url=url, max_retries=0, timeout=Timeouts(total=5, attempt=5)
    )


# -- defect 6: untyped errors -------------------------------------------------------------

RAW_CASES: list[tuple[str, bytes, type[GatewayError], str]] = [
    (
        "malformed status line",
        b"HTTP/1.1 two-hundred OK\r\nContent-Length: 2\r\n\r\n{}",
        APIConnectionError,
        "GET /api/billing/wallet failed",
    ),
    (
        "70 KB header line",
        http("HTTP/1.1 200 OK", "X-Junk: " + "a" * 70_000, body=b"{}"),
        APIConnectionError,
        "failed",
    ),
    (
        "Retry-After of a superscript two",
        http("HTTP/1.1 429 Too Many Requests", "Retry-After: \u00b2".encode().decode("latin-1")),
        RateLimitError,
        "429",
    ),
    (
        "200 body of 200,000 nested [",
        http("HTTP/1.1 200 OK", "Content-Type: application/json", body=NESTED),
        APIResponseValidationError,
        "not valid JSON",
    ),
    (
        "400 body of 200,000 nested [",
        http("HTTP/1.1 400 Bad Request", body=NESTED),
        BadRequestError,
        "non-JSON body",
    ),
    (
        "redirect with an unparsable Location",
        http("HTTP/1.1 302 Found", "Location: http://[::1/x"),
        APIStatusError,
        "not followed",
    ),
]


@pytest.mark.parametrize(
    ("name", "answer", "error", "fragment"), RAW_CASES, ids=[c[0] for c in RAW_CASES]
)
async def test_unparsable_answers_are_typed_errors(
    raw: RawServer, name: str, answer: bytes, error: type[GatewayError], fragment: str
) -> None:
    raw.answer = answer
    async with client(raw.url) as gw:
        with pytest.raises(error, match=fragment) as info:
            await gw.billing.wallet()
    assert TEST_KEY not in str(info.value)


async def test_a_long_retry_after_in_non_ascii_digits_counts_as_absent(raw: RawServer) -> None:
    """'²'.isdigit() is True; the header is garbage, so the error carries no wait."""
    raw.answer = RAW_CASES[2][1]
    async with client(raw.url) as gw:
        with pytest.raises(RateLimitError) as info:
            await gw.billing.wallet()
    assert info.value.retry_after is None


UNENCODABLE: list[tuple[str, dict[str, Any], str]] = [
    ("a date", {"input": {"when": date(2026, 1, 2)}}, "input.when"),
    ("NaN", {"input": {"x": [1.0, float("nan")]}}, r"input.x\[1\]"),
    ("Infinity in params", {"params": {"t": float("inf")}}, "params.t"),
    ("a set", {"input": {"tags": {"a", "b"}}}, "input.tags"),
    ("a lone surrogate", {"input": {"text": "ok \ud800"}}, "input.text"),
    ("bytes", {"input": {"blob": b"\x89PNG"}}, "input.blob"),
    ("a tuple key", {"input": {(1, 2): "x"}}, "input"),
    ("a circular list", {"input": (lambda a: a.append(a) or a)([])}, "nested deeper"),
    ("an object", {"options": {"o": object()}}, "options.o"),
]


@pytest.mark.parametrize(("name", "patch", "field"), UNENCODABLE, ids=[c[0] for c in UNENCODABLE])
async def test_unencodable_input_is_refused_before_sending(
    server: FakeServer, gw: Gateway, name: str, patch: dict[str, Any], field: str
) -> None:
    """Refused as InvalidRequestError naming the path, not a TypeError mid-batch."""
    kwargs: dict[str, Any] = {"model": "demo-echo", "input": {"text": "x"}, **patch}
    with pytest.raises(InvalidRequestError, match=field) as info:
        await gw.runs.create(**kwargs)
    assert info.value.field is not None
    assert server.seen == []


async def test_encodable_values_still_go_through(server: FakeServer, gw: Gateway) -> None:
    """The check refuses only what cannot be encoded: int keys, tuples, None, bools pass."""
    server.on("POST", "/api/runs", reply(200, RUN))
    await gw.runs.create(model="demo-echo", input={1: (None, True, 2.5, "é")})
    assert server.seen[0].json()["input"] == {"1": [None, True, 2.5, "é"]}


async def test_an_unencodable_body_elsewhere_is_refused_by_the_transport(
    server: FakeServer, gw: Gateway
) -> None:
    """The transport's own guard, for bodies that did not come through a RunRequest."""
    with pytest.raises(InvalidRequestError, match="cannot be encoded as JSON"):
        await gw._transport.request("POST", "/api/runs", body={"x": object()})
    assert server.seen == []


# -- defect 8: compressed bodies ------------------------------------------------------------


@functools.cache
def gzip_bomb(mib: int = 200) -> bytes:
    """~200 KB of valid gzip that inflates to ``mib`` MiB of zeros, built in ~0.1 s.

    One 1 MiB block of zeros is deflated once, ending in a full flush (which resets the
    compressor), so the same ~1 KB segment can be repeated; then the gzip trailer.
    """
    block = bytes(MIB)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    packer.compress(block)
    packer.flush(zlib.Z_FULL_FLUSH)
    segment = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, (mib * MIB) & 0xFFFFFFFF)
    return header + segment * mib + packer.flush() + trailer


def test_the_bomb_is_a_valid_gzip_stream() -> None:
    """Inflated in bounded steps here, so the test itself never holds 200 MB."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    total, pending = 0, gzip_bomb(4)
    while pending:
        total += len(inflater.decompress(pending, MIB))
        pending = inflater.unconsumed_tail
    assert (total, inflater.eof) == (4 * MIB, True)


def compressed(body: bytes, encoding: str) -> web.StreamResponse:
    return web.Response(
        body=body,
        headers={"Content-Encoding": encoding, "Content-Type": "application/json"},
    )


async def test_a_gzip_bomb_is_refused_counting_inflated_bytes(server: FakeServer) -> None:
    """200 KB on the wire, 200 MB inflated: refused once 32 MiB are inflated, memory bounded."""
    bomb = gzip_bomb()
    assert len(bomb) < 256 * 1024

    async def handler(_: web.Request) -> web.StreamResponse:
        return compressed(bomb, "gzip")

    server.on("GET", "/api/billing/wallet", handler)
    async with client(server.url) as gw:
        tracemalloc.start()
        try:
            with pytest.raises(APIResponseValidationError, match="larger than"):
                await gw.billing.wallet()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < MAX_RESPONSE_BYTES + 16 * MIB, f"peak {peak / MIB:.0f} MiB"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw deflate"])
async def test_compressed_answers_are_inflated(server: FakeServer, encoding: str) -> None:
    """gzip and deflate (zlib-wrapped as the RFC says, or raw as some servers send it)."""
    body = json.dumps(WALLET).encode()
    packed = {
        "gzip": gzip.compress(body),
        "deflate": zlib.compress(body),
        "raw deflate": zlib.compress(body, wbits=-15),
    }[encoding]

    async def handler(_: web.Request) -> web.StreamResponse:
        return compressed(packed, encoding.split()[-1])

    server.on("GET", "/api/billing/wallet", handler)
    async with client(server.url) as gw:
        wallet = await gw.billing.wallet()
    assert str(wallet.balance) == WALLET["balance"]
    assert server.seen[0].headers["Accept-Encoding"] == "gzip, deflate"


@pytest.mark.parametrize(
    ("encoding", "body", "fragment"),
    [("br", b"\x0b\x02\x80{}\x03", "Content-Encoding 'br'"), ("gzip", b"not gzip", "inflate")],
)
async def test_undecodable_encodings_are_typed_errors(
    server: FakeServer, encoding: str, body: bytes, fragment: str
) -> None:
    async def handler(_: web.Request) -> web.StreamResponse:
        return compressed(body, encoding)

    server.on("GET", "/api/billing/wallet", handler)
    async with client(server.url) as gw:
        with pytest.raises(APIResponseValidationError, match=fragment):
            await gw.billing.wallet()

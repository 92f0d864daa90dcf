"""Every API error has the envelope and a request id, bodies are UTF-8 JSON in an encoding
the emulator decodes, a client that leaves is not an error, and a stalled request is cut.
Issue 22, defects 7 (``br``/``zstd`` got a bare text/plain 400, ``x-unknown`` and
``compress`` bodies were executed) and 8 (integer literals past a double and UTF-16 bodies
were accepted), and the "also seen" disconnect tracebacks."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import pytest_asyncio

from gateway_async.emulator import DEFAULT_API_KEY, Emulator

from .conftest import Api

MAX_BODY = 1024**2  # the emulator's limit on an API body, once decoded

RUN = json.dumps({"model": "demo-echo", "input": {"a": 1}}).encode()
JSON = {"Content-Type": "application/json"}


def assert_envelope(reply: Any, status: int, code: str) -> None:
    assert reply.status == status, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.headers["X-Request-Id"].startswith("req_")
    assert reply.body["error"]["code"] == code


@pytest.mark.parametrize("coding", ["br", "zstd", "x-unknown", "compress", "gzip, br", "Br"])
async def test_unsupported_encodings_are_415_and_never_executed(
    api: Api, emu: Emulator, coding: str
) -> None:
    headers = {**JSON, "Content-Encoding": coding}
    reply = await api.call("POST", "/api/runs", data=RUN, headers=headers)
    assert_envelope(reply, 415, "unsupported_encoding")
    assert reply.body["error"]["details"] == {"field": "Content-Encoding"}
    assert "gzip or deflate" in reply.body["error"]["message"]
    assert emu.stats.executions == 0


@pytest.mark.parametrize(
    "packed",
    [
        pytest.param((gzip.compress(RUN), "gzip"), id="gzip"),
        pytest.param((zlib.compress(RUN), "deflate"), id="deflate"),
        pytest.param((zlib.compress(RUN, wbits=-15), "deflate"), id="raw-deflate"),
        pytest.param((RUN, "identity"), id="identity"),
    ],
)
async def test_gzip_and_deflate_are_decoded(api: Api, packed: tuple[bytes, str]) -> None:
    body, coding = packed
    headers = {**JSON, "Content-Encoding": coding}
    reply = await api.call("POST", "/api/runs", data=body, headers=headers)
    assert (reply.status, reply.body["output"]) == (200, {"a": 1})


async def test_corrupt_or_oversized_compressed_bodies(api: Api, emu: Emulator) -> None:
    headers = {**JSON, "Content-Encoding": "gzip"}
    corrupt = await api.call("POST", "/api/runs", data=b"not gzip", headers=headers)
    assert_envelope(corrupt, 400, "bad_request")
    padded = b'{"model": "demo-echo", "input": {"a": "' + b" " * (MAX_BODY + 1) + b'"}}'
    bomb = await api.call("POST", "/api/runs", data=gzip.compress(padded), headers=headers)
    assert_envelope(bomb, 413, "payload_too_large")
    assert emu.stats.executions == 0


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"model": "demo-echo", "input": {"n": 1' + b"0" * 400 + b"}}", id="int"),
        pytest.param(b'{"model": "demo-echo", "input": {"n": -1' + b"0" * 309 + b"}}", id="neg"),
        pytest.param(b'{"model": "demo-echo", "input": {"n": 1e400}}', id="float"),
    ],
)
async def test_numbers_beyond_a_double_are_refused(api: Api, emu: Emulator, raw: bytes) -> None:
    reply = await api.call("POST", "/api/runs", data=raw, headers=JSON)
    assert_envelope(reply, 400, "bad_request")
    assert "too large" in reply.body["error"]["message"]
    assert emu.stats.executions == 0


async def test_the_largest_double_sized_integer_is_accepted(api: Api) -> None:
    raw = b'{"model": "demo-echo", "input": {"n": 1' + b"0" * 300 + b"}}"
    reply = await api.call("POST", "/api/runs", data=raw, headers=JSON)
    assert reply.status == 200


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32", "latin-1"])
async def test_bodies_not_in_utf8_are_400_and_not_charged(
    api: Api, emu: Emulator, encoding: str
) -> None:
    text = json.dumps({"model": "demo-echo", "input": {"name": "café"}}, ensure_ascii=False)
    reply = await api.call("POST", "/api/runs", data=text.encode(encoding), headers=JSON)
    assert_envelope(reply, 400, "bad_request")
    assert "UTF-8" in reply.body["error"]["message"]
    assert emu.stats.charges == 0


# -- disconnects and slow clients ---------------------------------------------------------------


class Records(logging.Handler):
    """Collects the emulator's log records; ``seen`` is set by the first one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.seen.set()


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("gateway_async.emulator")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


async def raw_request(url: str, head: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(head)
    await writer.drain()
    return reader, writer


def post_head(length: int, path: str = "/api/runs") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: {DEFAULT_API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def test_a_client_that_disconnects_is_one_debug_line(emu: Emulator, records: Records) -> None:
    _, writer = await raw_request(emu.base_url, post_head(100) + b'{"model"')
    writer.close()
    await writer.wait_closed()
    await asyncio.wait_for(records.seen.wait(), 30)
    assert [(r.levelno, r.exc_info) for r in records.records] == [(logging.DEBUG, None)]
    assert "client disconnected" in records.records[0].getMessage()


async def test_an_unexpected_error_logs_its_traceback_once(
    api: Api, emu: Emulator, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(emu.core.catalogue, "get", boom)
    reply = await api.get("/api/marketplace/models/demo-echo")
    assert_envelope(reply, 500, "internal_error")
    errors = [r for r in records.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None


@pytest_asyncio.fixture
async def impatient() -> AsyncIterator[Emulator]:
    async with Emulator(idle_timeout=0.2) as emulator:
        yield emulator


async def test_trickling_headers_are_cut(impatient: Emulator) -> None:
    reader, writer = await raw_request(impatient.base_url, b"POST /api/runs HTTP/1.1\r\nHo")
    try:
        assert await asyncio.wait_for(reader.read(), 30) == b""  # closed by the emulator
    finally:
        writer.close()


async def test_a_stalled_body_is_408_and_the_connection_closed(impatient: Emulator) -> None:
    reader, writer = await raw_request(impatient.base_url, post_head(100) + b'{"model"')
    try:
        answer = await asyncio.wait_for(reader.read(), 30)  # to EOF: the server closed
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert b"X-Request-Id: req_" in head
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert impatient.stats.executions == 0


async def test_a_stalled_storage_put_is_request_timeout(
    impatient: Emulator, session: aiohttp.ClientSession
) -> None:
    body = {"filename": "a.txt", "content_type": "text/plain", "size": 10}
    api_reply = (await Api(session, impatient).post("/api/media/upload/init", body)).body
    path = api_reply["upload_url"].split("/", 3)[3]
    head = (
        f"PUT /{path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n"
    ).encode()
    reader, writer = await raw_request(impatient.storage_url, head + b"abc")
    try:
        answer = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"<Code>RequestTimeout</Code>" in answer
    assert impatient.core.state.uploads[api_reply["upload_id"]].put_sha256 is None


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"GET /api/billing/wallet HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", id="nul"),
        pytest.param(b"GET /api/billing/wallet BOGUS\r\nHost: x\r\n\r\n", id="request-line"),
    ],
)
async def test_what_aiohttp_answers_before_any_handler(emu: Emulator, head: bytes) -> None:
    """Documented in docs/emulator.md: no request is formed, so aiohttp's plain 400 it is
    (no envelope, no request id); this test notices if that ever changes."""
    reader, writer = await raw_request(emu.base_url, head)
    try:
        answer = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.0 400 Bad Request"
    assert b"Content-Type: text/plain" in rest
    assert b"X-Request-Id" not in rest
    assert emu.stats.requests_by_route == {}  # no handler or middleware ran


async def test_the_openapi_document_states_the_new_answers(api: Api) -> None:
    document = (await api.get("/api/openapi.json")).body
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method == "post":
                assert {"408", "415"} <= set(operation["responses"]), path
    assert "410" in document["paths"]["/api/media/upload/parts"]["post"]["responses"]
    codes = document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
    assert {"invalid_part", "unsupported_encoding", "request_timeout"} <= set(codes["code"]["enum"])

"""Bad input and a hostile server, as one table: each case names the typed error it must
raise and a fragment of its message. Nothing may hang, and the key never shows."""

from __future__ import annotations

import asyncio
import inspect
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway_async import (
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    ConfigurationError,
    Gateway,
    InvalidRequestError,
    RateLimitError,
    ServerError,
    Timeouts,
)
from tests.conftest import TEST_KEY, FakeServer, reply
from tests.core.test_resources import model
from tests.core.test_transport import RUN, WALLET

# -- configuration ------------------------------------------------------------------------

CONFIG_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("no key anywhere", {"base_url": "https://gw.example"}, "GATEWAY_API_KEY"),
    ("empty key", {"api_key": "", "base_url": "https://gw.example"}, "empty"),
    ("key with a newline", {"api_key": "abc\n", "base_url": "https://gw.example"}, "whitespace"),
    ("key and token", {"api_key": "k", "access_token": "t", "base_url": "https://x"}, "not both"),
    ("non-http scheme", {"api_key": "k", "base_url": "ws://gw.example"}, "https://"),
    ("file scheme", {"api_key": "k", "base_url": "file:///etc/passwd"}, "https://"),
    ("http to a public host", {"api_key": "k", "base_url": "http://8.8.8.8"}, "clear text"),
    ("http to a private host", {"api_key": "k", "base_url": "http://192.168.1.2"}, "clear text"),
    ("missing host", {"api_key": "k", "base_url": "https:///api"}, "no host"),
    ("credentials in URL", {"api_key": "k", "base_url": "https://a:b@gw.example"}, "credentials"),
    ("no base URL", {"api_key": "k"}, "GATEWAY_BASE_URL"),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "fragment"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES]
)
def test_configuration_table(name: str, kwargs: dict[str, Any], fragment: str) -> None:
    """Each bad configuration fails at construction with ConfigurationError."""
    with pytest.raises(ConfigurationError, match=fragment) as info:
        Gateway(env={}, **kwargs)
    assert TEST_KEY not in str(info.value)


# -- run validation ---------------------------------------------------------------------

RUN_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("index without scope", {"mode": "index"}, "scope: required"),
    ("search without scope", {"mode": "search"}, "scope: required"),
    ("scope too long", {"scope": "s" * 65}, "at most 64"),
    ("scope with slash", {"scope": "a/b"}, "not a valid scope"),
    ("params not an object", {"params": [1]}, "params: must be a JSON object"),
    ("options not an object", {"options": "fast"}, "options: must be a JSON object"),
    ("hardware_tier", {"options": {"hardware_tier": "a100"}}, "options.hardware_tier"),
    ("routing in options", {"options": {"namespace": "n"}}, "options.namespace"),
    ("missing input", {"input": None}, "input: required"),
    ("bad idempotency key", {"idempotency_key": "ключ"}, "printable ASCII"),
]


@pytest.mark.parametrize(("name", "patch", "fragment"), RUN_CASES, ids=[c[0] for c in RUN_CASES])
async def test_run_validation_table(
    server: FakeServer, gw: Gateway, name: str, patch: dict[str, Any], fragment: str
) -> None:
    """Each bad run is refused before any byte is sent."""
    kwargs: dict[str, Any] = {"model": "demo-text-embed", "input": {"text": "x"}, **patch}
    with pytest.raises(InvalidRequestError, match=fragment):
        await gw.runs.create(**kwargs)
    assert server.seen == []


# -- hostile responses ------------------------------------------------------------------


def slow_loris() -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Headers at once, then one byte of body every 50 ms, forever."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        while True:
            await resp.write(b" ")
            await asyncio.sleep(0.05)  # the server's behaviour under test, not synchronisation

    return handler


def wrong_type(base: dict[str, Any], field: str) -> dict[str, Any]:
    value = base[field]
    bad: Any = {"not": "a string"} if isinstance(value, str) else "not-the-right-type"
    return {**base, field: bad}


Call = Callable[[Gateway], Awaitable[Any]]
get_run: Call = lambda gw: gw.runs.create(model="demo-echo", input={})  # noqa: E731
get_wallet: Call = lambda gw: gw.billing.wallet()  # noqa: E731
get_model: Call = lambda gw: gw.marketplace.get_model("demo-echo")  # noqa: E731

HOSTILE: list[tuple[str, str, str, Any, Call, type[Exception], str]] = [
    (
        "HTML 502",
        "POST",
        "/api/runs",
        reply(502, raw=b"<html><h1>Bad gateway</h1></html>"),
        get_run,
        ServerError,
        "HTML page",
    ),
    (
        "empty 200 body",
        "GET",
        "/api/billing/wallet",
        reply(200, raw=b""),
        get_wallet,
        APIResponseValidationError,
        "expected a JSON object",
    ),
    (
        "JSON array",
        "GET",
        "/api/billing/wallet",
        reply(200, [WALLET]),
        get_wallet,
        APIResponseValidationError,
        "expected a JSON object",
    ),
    (
        "truncated JSON",
        "POST",
        "/api/runs",
        reply(200, raw=b'{"id": "r'),
        get_run,
        APIResponseValidationError,
        "not valid JSON",
    ),
    (
        "huge body",
        "GET",
        "/api/billing/wallet",
        reply(200, raw=b" " * (33 * 1024 * 1024)),
        get_wallet,
        APIResponseValidationError,
        "larger than",
    ),
    (
        "slow loris",
        "GET",
        "/api/billing/wallet",
        slow_loris(),
        get_wallet,
        APITimeoutError,
        "timed out",
    ),
    (
        "redirect elsewhere",
        "GET",
        "/api/billing/wallet",
        reply(302, headers={"Location": "https://evil.example/steal"}),
        get_wallet,
        APIStatusError,
        "not followed",
    ),
    (
        "Retry-After of a year",
        "POST",
        "/api/runs",
        reply(429, headers={"Retry-After": str(365 * 86400)}),
        get_run,
        RateLimitError,
        "429",
    ),
    (
        "error envelope of wrong types",
        "POST",
        "/api/runs",
        reply(500, {"error": {"code": 1, "message": None}}),
        get_run,
        ServerError,
        "HTTP 500",
    ),
]
HOSTILE += [
    (
        f"Run.{f} wrong type",
        "POST",
        "/api/runs",
        reply(200, wrong_type(RUN, f)),
        get_run,
        APIResponseValidationError,
        f,
    )
    for f in ("id", "model", "mode", "status", "usage", "created_at")
]
HOSTILE += [
    (
        f"Wallet.{f} wrong type",
        "GET",
        "/api/billing/wallet",
        reply(200, wrong_type(WALLET, f)),
        get_wallet,
        APIResponseValidationError,
        f,
    )
    for f in WALLET
]
HOSTILE += [
    (
        f"MarketplaceModel.{f} wrong type",
        "GET",
        "/api/marketplace/models/demo-echo",
        reply(200, wrong_type(model("demo-echo"), f)),
        get_model,
        APIResponseValidationError,
        f,
    )
    for f in (
        "slug",
        "name",
        "description",
        "modes",
        "vector_modes",
        "input_schema",
        "price_per_run",
        "release",
    )
]


@pytest.mark.parametrize(
    ("name", "method", "path", "handler", "call", "error", "fragment"),
    HOSTILE,
    ids=[c[0] for c in HOSTILE],
)
async def test_hostile_server_table(
    server: FakeServer,
    name: str,
    method: str,
    path: str,
    handler: Any,
    call: Call,
    error: type[Exception],
    fragment: str,
) -> None:
    """Each hostile answer becomes its typed error within the deadline, without the key."""
    server.on(method, path, handler)
    async with Gateway(
        api_key=TEST_KEY,
        base_url=server.url,
        max_retries=0,
        timeout=Timeouts(total=1.0, attempt=1.0),
    ) as gw:
        with pytest.raises(error, match=fragment) as info:
            await asyncio.wait_for(call(gw), 10)
    assert TEST_KEY not in str(info.value)
    assert TEST_KEY not in repr(info.value)


# -- upload bad input ---------------------------------------------------------------------


class _Unseekable(io.RawIOBase):
    def readable(self) -> bool:
        return True


async def _no_size_stream() -> AsyncIterator[bytes]:
    yield b"x"


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe")
    return tmp / "pipe"


def _closed_file(tmp: Path) -> Any:
    (tmp / "f.bin").write_bytes(b"abc")
    handle = open(tmp / "f.bin", "rb")  # noqa: SIM115 - closed on purpose
    handle.close()
    return handle


def _text_file(tmp: Path) -> Any:
    (tmp / "f.txt").write_text("abc")
    return open(tmp / "f.txt")


def _file(tmp: Path) -> Path:
    (tmp / "f.bin").write_bytes(b"abc")
    return tmp / "f.bin"


# (name, source builder, upload() options, message fragment)
UPLOAD_CASES: list[tuple[str, Callable[[Path], Any], dict[str, Any], str]] = [
    ("missing path", lambda tmp: tmp / "nope.png", {}, "does not exist"),
    ("directory", lambda tmp: tmp, {}, "is a directory"),
    ("fifo", _fifo, {}, "not a regular file"),
    ("negative size", lambda tmp: b"abc", {"size": -1}, "non-negative"),
    ("wrong size for bytes", lambda tmp: b"abc", {"size": 5}, "source holds 3 bytes"),
    ("wrong size for a path", _file, {"size": 4}, "source holds 3 bytes"),
    ("size not an int", lambda tmp: b"abc", {"size": "3"}, "not a byte count"),
    ("async iterable without size", lambda tmp: _no_size_stream(), {}, "needs size="),
    ("closed file object", _closed_file, {}, "closed"),
    ("text-mode file object", _text_file, {}, "text mode"),
    ("unseekable file object", lambda tmp: _Unseekable(), {}, "not seekable"),
    ("filename with a slash", lambda tmp: b"x", {"filename": "../a.png"}, "path separator"),
    ("filename with a backslash", lambda tmp: b"x", {"filename": "a\\b.png"}, "separator"),
    ("filename with a newline", lambda tmp: b"x", {"filename": "a\n.png"}, "control char"),
    ("filename '..'", lambda tmp: b"x", {"filename": ".."}, "non-empty file name"),
    ("content type not MIME", lambda tmp: b"x", {"content_type": "png"}, "not a MIME type"),
    ("not a source at all", lambda tmp: 42, {}, "not an upload source"),
]


@pytest.mark.parametrize(
    ("name", "build", "options", "fragment"), UPLOAD_CASES, ids=[c[0] for c in UPLOAD_CASES]
)
async def test_upload_input_table(
    server: FakeServer,
    gw: Gateway,
    tmp_path: Path,
    name: str,
    build: Callable[[Path], Any],
    options: dict[str, Any],
    fragment: str,
) -> None:
    """Each bad upload input is refused before any request, naming what to fix."""
    source = build(tmp_path)
    try:
        with pytest.raises(InvalidRequestError, match=fragment):
            await gw.media.upload(source, **options)
    finally:
        if isinstance(source, io.IOBase) and not source.closed:
            source.close()
        if inspect.isasyncgen(source):
            await source.aclose()
    assert server.seen == []


async def test_unreadable_file_is_refused_before_any_request(
    server: FakeServer, gw: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Permission bits do not stop root (CI), so the open itself is made to fail."""

    def denied(path: Path) -> Any:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("gateway_async._upload.files._open_fd", denied)
    with pytest.raises(InvalidRequestError, match="cannot be read: Permission denied"):
        await gw.media.upload(_file(tmp_path))
    assert server.seen == []


def test_table_has_at_least_forty_cases() -> None:
    """The issue asks for at least 40 cases across the tables."""
    total = len(CONFIG_CASES) + len(RUN_CASES) + len(HOSTILE) + len(UPLOAD_CASES)
    assert total >= 40

"""Shared test setup: the aioresponses compatibility shim and small loopback servers."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from unittest import mock

import aiohttp
import aioresponses.compat
import aioresponses.core
import attrs
import pytest_asyncio
from aiohttp import ClientResponse, web
from multidict import CIMultiDict


def _patch_aioresponses() -> None:
    """Make aioresponses 0.7.9 work on aiohttp 3.14.

    aiohttp 3.14 added a required ``stream_writer`` argument to ``ClientResponse`` and
    ``StreamReader.feed_data`` pauses the (mock) protocol past 2 x limit, which trips an
    assertion for bodies over ~128 KiB (aioresponses issue #289; fix not yet released).
    The shim is guarded: once aioresponses builds responses itself with ``stream_writer``,
    or stops using the old factory, it does nothing.
    """
    params = inspect.signature(ClientResponse.__init__).parameters
    source = inspect.getsource(aioresponses.core.RequestMatch._build_response)
    if "stream_writer" not in params or "stream_writer" in source:
        return

    class _Response(ClientResponse):
        def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
            kwargs.setdefault("stream_writer", mock.Mock(output_size=0))
            super().__init__(method, url, **kwargs)

    def _reader(loop: Any = None) -> aiohttp.StreamReader:
        protocol = aiohttp.client_proto.ResponseHandler(loop=loop)
        return aiohttp.StreamReader(protocol, limit=2**30, loop=loop)

    aioresponses.core.ClientResponse = _Response  # type: ignore[misc]
    aioresponses.core.stream_reader_factory = _reader
    aioresponses.compat.stream_reader_factory = _reader


_patch_aioresponses()


# -- a programmable Gateway stand-in on loopback -----------------------------------------------


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@attrs.frozen
class Seen:
    """One request as the server saw it."""

    method: str
    path: str
    raw_path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def reply(
    status: int = 200,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> Handler:
    """A handler answering ``body`` as JSON (or ``raw`` bytes) with ``status``."""

    async def handler(_: web.Request) -> web.StreamResponse:
        hdrs = {"X-Request-Id": "req_test", **(headers or {})}
        if raw is not None:
            return web.Response(status=status, body=raw, headers=hdrs)
        return web.json_response(body if body is not None else {}, status=status, headers=hdrs)

    return handler


async def wait_until(condition: Callable[[], bool], what: str, timeout: float) -> None:
    """Poll ``condition`` on the event loop (a server on it keeps serving meanwhile),
    failing after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.01)


async def serve_on_loopback(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on 127.0.0.1 at a free port; the runner (to clean up) and its URL.

    Handlers are cancelled when their client hangs up, and shutdown waits at most 0.5 s.
    """
    runner = web.AppRunner(
        app, handle_signals=False, handler_cancellation=True, shutdown_timeout=0.5
    )
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


class FakeServer:
    """An aiohttp test server whose answers are queued per (method, path); it records requests."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._routes: dict[tuple[str, str], list[Handler]] = {}
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self.runner: web.AppRunner | None = None
        self.url = ""

    def on(self, method: str, path: str, *handlers: Handler) -> None:
        """Answer ``method path`` with ``handlers`` in turn; the last one repeats."""
        self._routes[(method, path)] = list(handlers)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            Seen(
                request.method,
                request.path,
                request.raw_path,
                dict(request.query),
                CIMultiDict(request.headers),
                body,
            )
        )
        queue = self._routes.get((request.method, request.path))
        if not queue:
            return web.json_response(
                {"error": {"code": "not_found", "message": f"no route {request.path}"}}, status=404
            )
        handler = queue.pop(0) if len(queue) > 1 else queue[0]
        return await handler(request)

    async def start(self) -> None:
        self.runner, self.url = await serve_on_loopback(self.app)

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest_asyncio.fixture
async def server() -> AsyncIterator[FakeServer]:
    srv = FakeServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


@pytest_asyncio.fixture
async def other_server() -> AsyncIterator[FakeServer]:
    """A second origin (another port), e.g. for cross-origin redirects."""
    srv = FakeServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


TEST_KEY = "gk_test_secret_0123456789"


def no_wait_policy(max_retries: int = 2) -> Any:
    from gateway_async import RetryPolicy

    return RetryPolicy(max_retries=max_retries, base_delay=0.0, max_delay=0.0)


@pytest_asyncio.fixture
async def gw(server: FakeServer) -> AsyncIterator[Any]:
    """A client bound to ``server`` that retries without waiting."""
    from gateway_async import Gateway

    async with Gateway(api_key=TEST_KEY, base_url=server.url, retry=no_wait_policy()) as client:
        yield client


def never() -> Handler:
    """A handler that never answers (until the client gives up)."""

    async def handler(_: web.Request) -> web.StreamResponse:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return handler

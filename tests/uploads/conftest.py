"""A small Gateway + storage pair on loopback for upload tests.

The API listener serves ``init`` and ``complete`` from raw JSON; the storage listener (a
second port, so another origin) takes the PUTs. Storage behaviour is queued per attempt
(``ok``, ``503``, ``reset``, ``403``, ``hang``...), and both sides record what they saw.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest_asyncio
from aiohttp import web
from multidict import CIMultiDict

from gateway_async import Gateway, RetryPolicy
from tests.conftest import TEST_KEY, serve_on_loopback

Behaviour = str | Callable[[web.Request], Any]


@attrs.define
class SeenPut:
    headers: CIMultiDict[str]
    raw_query: str
    size: int
    sha256: str


class UploadServers:
    """The fake Gateway (init/complete) and its storage."""

    def __init__(self) -> None:
        self.inits: list[dict[str, Any]] = []
        self.completes: list[dict[str, Any]] = []
        self.puts: list[SeenPut] = []
        self.stored: dict[str, bytes] = {}
        self.received: dict[str, tuple[int, str]] = {}  # upload_id -> (size, sha256)
        self.behaviours: list[Behaviour] = []
        self.complete_statuses: list[int] = []
        self.init_status = 201
        self.extra_headers: dict[str, str] = {"x-amz-meta-origin": "sdk-test"}
        self.query = "X-Amz-Credential=AKIA%2F20261124%2Fus%28east%29&X-Sig=abc%7Edef"
        self.in_flight = 0
        self.peak = 0
        self.put_started = asyncio.Event()
        self.init_gate: asyncio.Event | None = None  # when set, inits wait for it
        self.inits_waiting = 0
        self.init_arrivals = asyncio.Condition()
        self.api_url = self.storage_url = ""
        self._runners: list[web.AppRunner] = []

    # -- API -------------------------------------------------------------------------------

    async def init(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.inits.append(body)
        upload_id = f"upl_{len(self.inits)}"
        if self.init_gate is not None:
            async with self.init_arrivals:
                self.inits_waiting += 1
                self.init_arrivals.notify_all()
            await self.init_gate.wait()
        if self.init_status != 201:
            err = {"error": {"code": "unauthorized", "message": "bad key"}}
            return web.json_response(err, status=self.init_status)
        ticket = {
            "upload_id": upload_id,
            "upload_url": f"{self.storage_url}/bucket/{upload_id}?{self.query}",
            "method": "PUT",
            "headers": {"Content-Type": body["content_type"], **self.extra_headers},
            "expires_at": "2099-01-01T00:00:00Z",
        }
        return web.json_response(ticket, status=201)

    async def complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.completes.append(body)
        status = self.complete_statuses.pop(0) if self.complete_statuses else 200
        if status != 200:
            err = {"error": {"code": "upload_expired", "message": "expired"}}
            return web.json_response(err, status=status)
        size, digest = self.received[body["upload_id"]]
        if body.get("sha256") not in (None, digest):
            err = {"error": {"code": "conflict", "message": "sha256 mismatch"}}
            return web.json_response(err, status=409)
        ref = {
            "media_ref": f"mref_{body['upload_id']}",
            "size": size,
            "content_type": "application/octet-stream",
            "sha256": digest,
            "filename": "f",
        }
        return web.json_response(ref)

    # -- storage ---------------------------------------------------------------------------

    async def put(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.put_started.set()
        try:
            behaviour = self.behaviours.pop(0) if self.behaviours else "ok"
            if callable(behaviour):
                return await behaviour(request)  # type: ignore[no-any-return]
            return await self._behave(behaviour, request)
        finally:
            self.in_flight -= 1

    async def _behave(self, behaviour: str, request: web.Request) -> web.StreamResponse:
        if behaviour == "reset":
            await request.content.read(1024)
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        if behaviour == "hang":
            await asyncio.Event().wait()
        if behaviour.isdigit():
            await request.read()
            return web.Response(status=int(behaviour), text="<Error>nope</Error>")
        data = await request.read()
        upload_id = request.path.rsplit("/", 1)[-1]
        self.puts.append(
            SeenPut(
                CIMultiDict(request.headers),
                request.raw_path.split("?", 1)[1],
                len(data),
                hashlib.sha256(data).hexdigest(),
            )
        )
        self.accept(upload_id, data)
        return web.Response(status=200, headers={"ETag": '"etag"'})

    def accept(self, upload_id: str, data: bytes, digest: str | None = None) -> None:
        """Record a finished PUT (``digest`` for bodies a behaviour hashed and discarded)."""
        self.stored[upload_id] = data
        self.received[upload_id] = (len(data), digest or hashlib.sha256(data).hexdigest())

    async def start(self) -> None:
        api = web.Application()
        api.router.add_post("/api/media/upload/init", self.init)
        api.router.add_post("/api/media/upload/complete", self.complete)
        storage = web.Application(client_max_size=1024**4)
        storage.router.add_put("/bucket/{upload_id}", self.put)
        self.api_url = await self._serve(api)
        self.storage_url = await self._serve(storage)

    async def _serve(self, app: web.Application) -> str:
        runner, url = await serve_on_loopback(app)
        self._runners.append(runner)
        return url

    async def close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()


@pytest_asyncio.fixture
async def servers() -> AsyncIterator[UploadServers]:
    pair = UploadServers()
    await pair.start()
    try:
        yield pair
    finally:
        await pair.close()


def quick_retries(max_retries: int = 2) -> RetryPolicy:
    return RetryPolicy(max_retries=max_retries, base_delay=0.0, max_delay=0.0)


@pytest_asyncio.fixture
async def gw(servers: UploadServers) -> AsyncIterator[Gateway]:
    async with Gateway(api_key=TEST_KEY, base_url=servers.api_url, retry=quick_retries()) as client:
        yield client


def threads_left(name: str) -> list[threading.Thread]:
    """Threads called ``name`` still alive once each had 5 s to finish.

    A reader thread signals the loop from its last lines, so it may still be returning
    when the awaited close completes; joining it is the synchronisation, not a sleep.
    """
    for thread in [t for t in threading.enumerate() if t.name == name]:
        thread.join(timeout=5)
    return [t for t in threading.enumerate() if t.name == name]

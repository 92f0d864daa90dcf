"""Fixtures for the emulator's own tests: a started emulator with a hand-driven clock and
a raw aiohttp client (never the SDK: these tests check the wire contract itself)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from multidict import CIMultiDictProxy
from yarl import URL

from gateway_async.emulator import DEFAULT_API_KEY, Emulator

START = 1_795_000_000.0  # 2026-11-18


@dataclass
class FakeClock:
    """A clock that only moves when told to."""

    now: float = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Reply:
    """One response, read completely."""

    status: int
    headers: CIMultiDictProxy[str]
    body: Any
    text: str = field(repr=False)


class Api:
    """A raw client for the emulator's ``/api/*`` and storage endpoints."""

    def __init__(self, session: aiohttp.ClientSession, emulator: Emulator) -> None:
        self.session = session
        self.emulator = emulator
        self.auth = {"X-API-Key": DEFAULT_API_KEY}

    async def call(self, method: str, path: str, **kwargs: Any) -> Reply:
        headers = {**self.auth, **kwargs.pop("headers", {})}
        url = path if path.startswith("http") else self.emulator.base_url + path
        async with self.session.request(method, url, headers=headers, **kwargs) as response:
            text = await response.text()
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = None
            return Reply(response.status, response.headers, body, text)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, body: Any, **kwargs: Any) -> Reply:
        return await self.call("POST", path, json=body, **kwargs)

    async def run(self, **body: Any) -> Reply:
        return await self.post("/api/runs", body)

    async def init(self, data: bytes, content_type: str = "application/octet-stream") -> Any:
        body = {"filename": "f.bin", "content_type": content_type, "size": len(data)}
        reply = await self.post("/api/media/upload/init", body)
        assert reply.status == 201, reply.text
        return reply.body

    async def put(self, ticket: Any, data: bytes, **headers: str) -> aiohttp.ClientResponse:
        url = URL(ticket["upload_url"], encoded=True)
        async with self.session.put(url, data=data, headers={**ticket["headers"], **headers}) as r:
            await r.read()
            return r

    async def upload(self, data: bytes, content_type: str = "application/octet-stream") -> str:
        ticket = await self.init(data, content_type)
        assert (await self.put(ticket, data)).status == 200
        reply = await self.post("/api/media/upload/complete", {"upload_id": ticket["upload_id"]})
        assert reply.status == 200, reply.text
        assert reply.body["sha256"] == hashlib.sha256(data).hexdigest()
        media_ref: str = reply.body["media_ref"]
        return media_ref


EmulatorFactory = Callable[..., Emulator]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def emu(clock: FakeClock) -> AsyncIterator[Emulator]:
    async with Emulator(clock=clock, browser_tokens=("browser-token",)) as emulator:
        yield emulator


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest_asyncio.fixture
async def api(session: aiohttp.ClientSession, emu: Emulator) -> Api:
    return Api(session, emu)

"""Fixtures for multipart uploads: an emulator answering parts of 5 MiB (its minimum)
above a 5 MiB threshold, with a hand-driven clock, plus a raw client and an SDK client."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio
from yarl import URL

from gateway_async import Gateway, RetryPolicy
from gateway_async.emulator import Emulator
from gateway_async.emulator._faults import Decision
from tests.emulator.conftest import FakeClock, api, clock, session

__all__ = ["api", "clock", "session"]  # the emulator tests' fixtures, over this ``emu``

MiB = 1024**2
PART = 5 * MiB
THRESHOLD = 5 * MiB


@pytest_asyncio.fixture
async def emu(clock: FakeClock) -> AsyncIterator[Emulator]:
    async with Emulator(
        clock=clock, multipart_threshold=THRESHOLD, multipart_part_size=PART
    ) as emulator:
        yield emulator


def quick_retries(max_retries: int = 3) -> RetryPolicy:
    return RetryPolicy(max_retries=max_retries, base_delay=0.0, max_delay=0.0)


@pytest_asyncio.fixture
async def gw(emu: Emulator) -> AsyncIterator[Gateway]:
    async with emu.client(retry=quick_retries()) as client:
        yield client


async def put_part(
    session: aiohttp.ClientSession, ticket: Any, number: int, data: bytes, **headers: str
) -> aiohttp.ClientResponse:
    """PUT ``data`` to part ``number``'s URL with the ticket's headers."""
    url = next(p["upload_url"] for p in ticket["parts"] if p["part_number"] == number)
    async with session.put(
        URL(url, encoded=True),
        data=io.BytesIO(data) if isinstance(data, bytes) else data,  # large bytes warn
        headers={**ticket["headers"], **headers},
    ) as response:
        await response.read()
        return response


class ScriptedFaults:
    """Stands in for the emulator's seeded fault draw: the listed decisions, in arrival
    order, for storage PUTs; no fault for anything else or once the script is used up."""

    def __init__(self, *decisions: Decision) -> None:
        self.script = list(decisions)

    def decide(self, route: str) -> Decision:
        if route != "PUT /storage" or not self.script:
            return Decision()
        return self.script.pop(0)

    def configure(self, faults: object) -> None:
        raise AssertionError("scripted faults are not reconfigured")


def script_faults(emu: Emulator, *decisions: Decision) -> ScriptedFaults:
    """Replace ``emu``'s fault draw with ``decisions`` (see ScriptedFaults)."""
    scripted = ScriptedFaults(*decisions)
    emu.core.faults = scripted  # type: ignore[assignment]
    return scripted

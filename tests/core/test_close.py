"""Regression tests of issue 21 (defect 5): closing a Gateway with calls in flight.

``aclose()`` refuses new calls, waits (bounded) for those in flight, and fails the rest
with ``APIConnectionError`` saying the client was closed, never with
``APIResponseValidationError`` (which means "a malformed 2xx body").
"""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest
from aiohttp import web

from gateway_async import (
    APIConnectionError,
    APIResponseValidationError,
    ConfigurationError,
    Gateway,
    Run,
    testing,
)
from gateway_async.emulator import Emulator
from tests.conftest import TEST_KEY, FakeServer, no_wait_policy, reply
from tests.core.test_transport import RUN

GUARD = 20.0

gateway_emulator = testing.gateway_emulator  # the shared fixture, under its own name


async def runs_in_flight(gw: Gateway, n: int) -> list[asyncio.Task[Run]]:
    tasks = [
        asyncio.create_task(gw.runs.create(model="demo-echo", input={"text": str(i)}))
        for i in range(n)
    ]
    await asyncio.sleep(0)  # each task's first step: its request is on its way
    return tasks


async def outcomes(tasks: list[asyncio.Task[Run]]) -> list[Any]:
    async with asyncio.timeout(GUARD):
        return await asyncio.gather(*tasks, return_exceptions=True)


async def test_closing_with_runs_in_flight_waits_for_their_answers(
    gateway_emulator: Emulator,
) -> None:
    """The issue's case: 20 runs executed by the server while the client closes."""
    gw = gateway_emulator.client(retry=no_wait_policy())
    tasks = await runs_in_flight(gw, 20)
    await gw.aclose()
    results = await outcomes(tasks)
    assert all(isinstance(run, Run) and run.succeeded for run in results), results
    assert gateway_emulator.stats.executions == 20


@attrs.define
class Held:
    """Runs in flight at ``server``, which holds every answer until ``release`` is set."""

    gw: Gateway
    tasks: list[asyncio.Task[Run]]
    release: asyncio.Event


async def held_runs(server: FakeServer, n: int) -> Held:
    """A client with ``n`` runs in flight, each already arrived at the server."""
    arrived: list[int] = []
    all_in, release = asyncio.Event(), asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        arrived.append(1)
        if len(arrived) == n:
            all_in.set()
        await release.wait()
        return await reply(200, RUN)(request)

    server.on("POST", "/api/runs", handler)
    gw = Gateway(api_key=TEST_KEY, base_url=server.url, retry=no_wait_policy())
    tasks = await runs_in_flight(gw, n)
    await all_in.wait()
    return Held(gw, tasks, release)


async def test_answers_that_arrive_while_closing_are_returned(server: FakeServer) -> None:
    held = await held_runs(server, 5)
    closing = asyncio.create_task(held.gw.aclose(timeout=GUARD))
    await asyncio.sleep(0)  # the close's first step (it was scheduled first)
    assert held.gw._transport._closed  # aclose has begun: new calls are refused now
    with pytest.raises(ConfigurationError, match="closed"):
        await held.gw.billing.wallet()
    held.release.set()
    results = await outcomes(held.tasks)
    await closing
    assert all(isinstance(run, Run) for run in results), results


async def test_calls_still_in_flight_after_the_timeout_fail_as_closed(server: FakeServer) -> None:
    held = await held_runs(server, 20)
    await held.gw.aclose(timeout=0.01)
    # Every call has ended by the time aclose returns: nothing is left running.
    assert all(task.done() for task in held.tasks)
    results = await outcomes(held.tasks)
    for error in results:
        assert isinstance(error, APIConnectionError), error
        assert not isinstance(error, APIResponseValidationError)
        assert "closed" in str(error)
        assert "may have been executed" in str(error)
        assert error.__cause__ is None
        assert error.__context__ is None
    held.release.set()


async def test_a_caller_cancelled_while_the_client_closes_is_still_cancelled(
    server: FakeServer,
) -> None:
    """The seam: only the close's own cancellation becomes the closed error."""
    held = await held_runs(server, 1)
    (task,) = held.tasks
    task.cancel()
    await held.gw.aclose(timeout=0)
    with pytest.raises(asyncio.CancelledError):
        await task
    held.release.set()


@pytest.mark.parametrize("timeout", [-1, float("nan"), "1"])
async def test_a_bad_close_timeout_is_refused(timeout: Any) -> None:
    gw = Gateway(api_key=TEST_KEY, base_url="http://127.0.0.1:9")
    with pytest.raises(ConfigurationError, match="timeout"):
        await gw.aclose(timeout=timeout)
    await gw.aclose()

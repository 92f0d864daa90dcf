"""Regression tests of issue 21: the ingest's lifetime is a structure.

The iteration ends when the runner task that owns the stages' TaskGroup is done, however it
ended; ``aclose()``, a cancelled consumer and leaving ``async with`` take one path; one task
consumes an ingest. Each test fails by its guard (a hang) on the code before the issue.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway_async import ConfigurationError, Gateway
from gateway_async.pipeline import Ingest, IngestItem

from .conftest import MakeFiles, leftover_tasks

MODEL, SCOPE = "demo-image-embed", "test"
GUARD = 20.0  # seconds: a hang fails the test instead of the suite


async def drain(ingest: Ingest) -> list[IngestItem]:
    return [item async for item in ingest]


async def settled(*tasks: asyncio.Task[Any]) -> list[Any]:
    """The tasks' results (or exceptions), failing the test if one of them hangs."""
    async with asyncio.timeout(GUARD):
        return await asyncio.gather(*tasks, return_exceptions=True)


# -- defect 1: aclose() in the same loop turn as the first __anext__ ----------------------


async def test_aclose_in_the_turn_of_the_first_anext_ends_the_consumer(
    gw: Gateway, make_files: MakeFiles
) -> None:
    ingest = gw.ingest(make_files(3), model=MODEL, scope=SCOPE)
    consumer = asyncio.create_task(drain(ingest))
    # Runs right after the consumer's first step, before the runner it made has started.
    closer = asyncio.create_task(ingest.aclose())
    items, closed = await settled(consumer, closer)
    assert items == []
    assert closed is None
    assert ingest.summary.stopped == "cancelled"
    assert not leftover_tasks()


async def test_aclose_before_any_iteration_ends_a_later_one_at_once(
    gw: Gateway, make_files: MakeFiles
) -> None:
    ingest = gw.ingest(make_files(3), model=MODEL, scope=SCOPE)
    await ingest.aclose()
    assert await settled(asyncio.create_task(drain(ingest))) == [[]]


async def test_a_runner_cancelled_from_outside_before_its_first_step_ends_the_iteration(
    gw: Gateway, make_files: MakeFiles
) -> None:
    ingest = gw.ingest(make_files(3), model=MODEL, scope=SCOPE)
    consumer = asyncio.create_task(drain(ingest))
    await asyncio.sleep(0)  # the consumer's first step made the runner; it has not run yet
    (runner,) = [t for t in asyncio.all_tasks() if t.get_name() == "gateway-ingest"]
    runner.cancel()  # e.g. a shutdown cancelling every task
    assert await settled(consumer) == [[]]
    assert not leftover_tasks()


async def test_aclose_from_another_task_mid_iteration_ends_the_consumer(
    gw: Gateway, make_files: MakeFiles
) -> None:
    ingest = gw.ingest(make_files(10), model=MODEL, scope=SCOPE, run_concurrency=1)
    got: list[IngestItem] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for item in ingest:
            got.append(item)
            first.set()

    consumer = asyncio.create_task(consume())
    await first.wait()
    await ingest.aclose()
    assert await settled(consumer) == [None]
    assert 1 <= len(got) < 10
    assert not leftover_tasks()


# -- defect 4: two tasks iterating one ingest ---------------------------------------------


async def test_a_second_consumer_is_refused_at_once_and_the_first_gets_every_item(
    gw: Gateway, make_files: MakeFiles
) -> None:
    async with gw.ingest(make_files(20), model=MODEL, scope=SCOPE) as ingest:
        first = asyncio.create_task(drain(ingest))
        second = asyncio.create_task(drain(ingest))
        items, refused = await settled(first, second)
    assert isinstance(refused, ConfigurationError)
    assert "one consumer" in str(refused)
    assert "fan" in str(refused)
    assert sorted(item.index for item in items) == list(range(20))
    assert all(item.ok for item in items)


async def test_after_the_end_any_task_may_ask_and_is_told_it_ended(
    gw: Gateway, make_files: MakeFiles
) -> None:
    ingest = gw.ingest(make_files(2), model=MODEL, scope=SCOPE)
    assert len(await drain(ingest)) == 2
    assert await settled(asyncio.create_task(drain(ingest))) == [[]]


async def test_one_task_at_a_time_may_take_turns_through_wait_for(
    gw: Gateway, make_files: MakeFiles
) -> None:
    """``asyncio.wait_for`` (3.11) awaits each ``anext`` in a task of its own: one at a time
    is one consumer."""
    ingest = gw.ingest(make_files(3), model=MODEL, scope=SCOPE)
    got = [await asyncio.wait_for(anext(ingest), GUARD) for _ in range(3)]
    assert sorted(item.index for item in got) == [0, 1, 2]
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(ingest), GUARD)

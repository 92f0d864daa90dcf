"""The pipeline's flow controls on their own: the AIMD limiter and the spend budget."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from gateway_async.pipeline import AIMDLimiter, SpendBudget


async def test_limiter_grants_up_to_its_limit_then_queues() -> None:
    """Past the limit, acquire waits until a slot is released."""
    limiter = AIMDLimiter(2)
    first, second = await limiter.acquire(), await limiter.acquire()
    third = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    assert not third.done()
    limiter.release(first)
    assert await third == 0
    limiter.release(second)
    limiter.release(0)
    assert limiter.active == 0


async def test_one_burst_of_throttles_halves_once() -> None:
    """Throttles from requests in flight together count as one signal (one halving)."""
    limiter = AIMDLimiter(32)
    tokens = [await limiter.acquire() for _ in range(8)]
    for token in tokens:
        limiter.release(token, throttled=True)
    assert limiter.limit == 16
    token = await limiter.acquire()
    limiter.release(token, throttled=True)
    assert limiter.limit == 8


async def test_throttles_never_go_below_the_minimum() -> None:
    """Repeated throttling stops at ``minimum``."""
    limiter = AIMDLimiter(8, minimum=2)
    for _ in range(10):
        limiter.release(await limiter.acquire(), throttled=True)
    assert limiter.limit == 2


async def test_a_success_streak_grows_the_limit_by_one() -> None:
    """``limit`` successes in a row add one slot, up to ``maximum``."""
    limiter = AIMDLimiter(4)
    limiter.release(await limiter.acquire(), throttled=True)
    assert limiter.limit == 2
    for _ in range(2):
        limiter.release(await limiter.acquire(), succeeded=True)
    assert limiter.limit == 3
    for _ in range(100):
        limiter.release(await limiter.acquire(), succeeded=True)
    assert limiter.limit == 4


async def test_a_cancelled_waiter_leaves_no_slot_taken() -> None:
    """Cancelling a waiting acquire neither leaks nor steals a slot."""
    limiter = AIMDLimiter(1)
    token = await limiter.acquire()
    waiter = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    limiter.release(token)
    await asyncio.gather(waiter, return_exceptions=True)
    assert limiter.active == 0


async def test_budget_reserves_the_price_of_each_run() -> None:
    """Reservations stop when one more run would pass the limit."""
    budget = SpendBudget(Decimal("0.0030"), Decimal("0.0010"))
    assert [await budget.reserve() for _ in range(3)] == [True, True, True]
    waiting = asyncio.ensure_future(budget.reserve())
    await asyncio.sleep(0)
    assert not waiting.done()
    budget.settle(Decimal("0.0010"))
    budget.settle(Decimal("0.0010"))
    budget.settle(Decimal("0.0010"))
    assert not await waiting


async def test_budget_waits_for_in_flight_runs_that_may_cost_less() -> None:
    """A run that ends uncharged frees its reservation for the next one."""
    budget = SpendBudget(Decimal("0.0010"), Decimal("0.0010"))
    assert await budget.reserve()
    waiting = asyncio.ensure_future(budget.reserve())
    await asyncio.sleep(0)
    budget.settle(None)
    assert await waiting
    assert Decimal(0) == budget.spent

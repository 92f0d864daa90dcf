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


async def test_a_waiter_cancelled_in_the_same_turn_as_a_release_raises_cancelled() -> None:
    """Cancel first, release next, in one loop turn: the waiter gets CancelledError (not the
    ValueError of removing itself from a queue the release already popped it from)."""
    limiter = AIMDLimiter(1)
    token = await limiter.acquire()
    waiter = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)  # the waiter is queued
    waiter.cancel()
    limiter.release(token)  # pops the cancelled waiter and skips it
    (outcome,) = await asyncio.gather(waiter, return_exceptions=True)
    assert isinstance(outcome, asyncio.CancelledError)
    assert (limiter.active, await limiter.acquire()) == (0, 0)


async def test_budget_reserves_the_price_of_each_run() -> None:
    """Reservations stop when one more run would pass the limit."""
    budget = SpendBudget(Decimal("0.0040"), Decimal("0.0010"))
    assert await budget.reserve()
    budget.settle(Decimal("0.0010"))  # the price probe: its reply shows the real price
    assert [await budget.reserve() for _ in range(3)] == [True, True, True]
    waiting = asyncio.ensure_future(budget.reserve())
    await asyncio.sleep(0)
    assert not waiting.done()
    budget.settle(Decimal("0.0010"))
    budget.settle(Decimal("0.0010"))
    budget.settle(Decimal("0.0010"))
    assert not await waiting


async def test_only_one_run_is_in_flight_until_a_reply_shows_the_price() -> None:
    """A surprise price can overshoot by the probe only, not by every run in flight."""
    budget = SpendBudget(Decimal("1"), Decimal("0.0010"))
    assert await budget.reserve()
    second = asyncio.ensure_future(budget.reserve())
    await asyncio.sleep(0)
    assert not second.done()
    budget.settle(Decimal(0), shows_price=False)  # never executed: still no price known
    assert await second
    third = asyncio.ensure_future(budget.reserve())
    await asyncio.sleep(0)
    assert not third.done()
    budget.settle(Decimal("0.0010"))
    assert await third
    assert await budget.reserve()  # priced: runs go out together now
    assert budget.in_flight == 2


async def test_runs_reserve_the_largest_charge_seen() -> None:
    """Listed at 0.0010, charged 0.1000: the next runs are held at 0.1000 each."""
    budget = SpendBudget(Decimal("0.25"), Decimal("0.0010"))
    assert await budget.reserve()
    budget.settle(Decimal("0.1000"))
    assert await budget.reserve()
    waiting = asyncio.ensure_future(budget.reserve())  # 0.1 + 0.1 + 0.1 > 0.25
    await asyncio.sleep(0)
    assert not waiting.done()
    budget.settle(None)  # unknown outcome: counted at the rate, 0.1000
    assert not await waiting
    assert budget.spent == Decimal("0.2000")


async def test_budget_waits_for_in_flight_runs_that_may_cost_less() -> None:
    """A run that ends uncharged frees its reservation for the next one."""
    budget = SpendBudget(Decimal("0.0010"), Decimal("0.0010"))
    assert await budget.reserve()
    waiting = asyncio.ensure_future(budget.reserve())
    await asyncio.sleep(0)
    budget.settle(Decimal(0))
    assert await waiting
    assert Decimal(0) == budget.spent


async def test_a_run_of_unknown_outcome_counts_as_spent() -> None:
    """A lost reply may have been charged: it settles at its full price."""
    budget = SpendBudget(Decimal("0.0020"), Decimal("0.0010"))
    for _ in range(2):
        assert await budget.reserve()
        budget.settle(None)
    assert (budget.spent, await budget.reserve()) == (Decimal("0.0020"), False)

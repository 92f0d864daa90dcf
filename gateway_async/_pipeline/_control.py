"""Two small flow controls of the ingest pipeline: AIMD concurrency and the spend budget.

Both are plain objects of one event loop (no locks needed), with synchronous releases so
they can be used safely in ``finally`` blocks of cancelled tasks.
"""

from __future__ import annotations

import asyncio
from collections import deque
from decimal import Decimal

from .._journal import never_executed
from ..models import Run

__all__ = ["AIMDLimiter", "SpendBudget", "charge_of"]


class AIMDLimiter:
    """A concurrency limit that halves when throttled and grows by one after a success streak.

    TCP's additive-increase / multiplicative-decrease: ``acquire()`` returns a token (the
    limit's epoch when the slot was granted); ``release(token, throttled=True)`` halves the
    limit only if no decrease happened since that token was issued, so a burst of 429s from
    requests that were all in flight together counts as one signal, not as five halvings.
    ``limit`` successes in a row grow it by one, up to ``maximum``.
    """

    def __init__(self, maximum: int, *, minimum: int = 1) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError("need 1 <= minimum <= maximum")
        self.maximum = maximum
        self.minimum = minimum
        self.limit = maximum
        self.active = 0
        self.epoch = 0
        self._streak = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> int:
        """Wait for a slot; returns the token to hand back to ``release``."""
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return self.epoch
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise
        return self.epoch

    def try_acquire(self) -> int | None:
        """A slot if one is free right now (nobody queued before us), else None."""
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return self.epoch
        return None

    def _abandon(self, waiter: asyncio.Future[None]) -> None:
        """A cancelled waiter leaves: hand back a slot it was granted, or leave the queue.

        A release in the same loop turn as the cancellation may already have popped the
        (cancelled) waiter and skipped it, so it may be in neither state: then nothing to do.
        """
        if waiter.done() and not waiter.cancelled():
            self._free()  # granted just as we were cancelled: give the slot back
        elif waiter in self._waiters:
            self._waiters.remove(waiter)

    def release(self, token: int, *, throttled: bool = False, succeeded: bool = False) -> None:
        """Give a slot back, reporting whether its request was throttled or succeeded."""
        if throttled:
            self._streak = 0
            if token == self.epoch and self.limit > self.minimum:
                self.limit = max(self.minimum, self.limit // 2)
                self.epoch += 1
        elif succeeded:
            self._streak += 1
            if self._streak >= self.limit and self.limit < self.maximum:
                self.limit += 1
                self._streak = 0
        self._free()

    def _free(self) -> None:
        self.active -= 1
        while self._waiters and self.active < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.active += 1
                waiter.set_result(None)


class SpendBudget:
    """Credits the pipeline may still spend: each in-flight run reserves its price first.

    A run reserves the *rate*: the larger of the listed price and the largest charge seen
    so far, since a model may charge more than it lists (then every run in flight is held
    at the new rate). Until a reply has shown the real price, only one run is in flight
    (a price probe), so a surprise price costs at most that one run more than the cap.

    ``reserve()`` succeeds while spent + reserved + rate fits the limit; when it does not
    fit but runs are in flight it waits for them to settle (their real cost may be lower),
    and answers False once nothing is in flight and the next run still would not fit. A run
    whose outcome is unknown (lost reply, timeout, 5xx) may have been charged, so it settles
    at the full rate: the cap holds even when every answer is lost.
    """

    def __init__(self, limit: Decimal, price: Decimal) -> None:
        self.limit = limit
        self.price = price
        self.largest = price  # the rate: max(listed price, largest charge seen)
        self.priced = False  # a reply has shown what a run really costs
        self.spent = Decimal(0)
        self.in_flight = 0
        self._settled = asyncio.Event()

    @property
    def reserved(self) -> Decimal:
        """What the runs in flight may cost, each at the current rate."""
        return self.in_flight * self.largest

    async def reserve(self) -> bool:
        while not self.priced and self.in_flight:  # the price probe is still out
            await self._settled.wait()
        while not self._fits():
            if not self.in_flight:
                return False
            await self._settled.wait()
        self.in_flight += 1
        return True

    def try_reserve(self) -> bool:
        """``reserve()`` without waiting: True if one more run fits right now."""
        if (self.priced or not self.in_flight) and self._fits():
            self.in_flight += 1
            return True
        return False

    def _fits(self) -> bool:
        return self.spent + self.reserved + self.largest <= self.limit

    def settle(self, charged: Decimal | None, *, shows_price: bool = True) -> None:
        """A reserved run ended: ``charged`` is what it cost (0: surely not charged), None
        when unknown, which counts as the full rate. ``shows_price`` is False when it never
        executed: its 0 says nothing about the model's price, so the probe goes on."""
        self.in_flight -= 1
        self.spent += self.largest if charged is None else charged
        if charged is not None and shows_price:
            self.priced = True
            self.largest = max(self.largest, charged)
        # Wake every waiter and arm a fresh event for the next round.
        self._settled.set()
        self._settled = asyncio.Event()


def charge_of(outcome: Run | BaseException | None) -> Decimal | None:
    """What a sent run cost: its usage, nothing if it surely never executed, None if unknown
    (a lost reply, a timeout, a 5xx, a 409: it may have executed and been charged)."""
    if isinstance(outcome, Run):
        return outcome.usage.credits
    if outcome is not None and never_executed(outcome):
        return Decimal(0)
    return None

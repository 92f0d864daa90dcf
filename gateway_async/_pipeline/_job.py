"""Job-wide controls for work spread over many processes: one ledger, many permit holders.

The ingest holds its spend budget and its AIMD limit in one event loop. A distributed job
(the Ray helpers) has many processes, so one ``JobLedger`` (hosted by one Ray actor) keeps
the same two controls, ``SpendBudget`` and ``AIMDLimiter``, for the whole job, plus its pace
(``requests_per_second``), a pause after a 429's ``Retry-After``, and the flags every worker
must see (the wallet ran out, the Gateway answered at least once, too many rows failed).

Workers do not ask it once per call: a ``JobPermits`` asks for permits in blocks (one per
call it is about to send, each reserved at the budget's rate and holding one of the job's
AIMD slots) and reports outcomes in blocks, so the ledger costs a round trip per block,
not per row. A permit that never comes back (its worker died) expires after its lease and
settles as an unknown outcome, i.e. as spent: the cap still holds, and nothing waits for it
for ever.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any, TypeAlias

import attrs

from .._errors import GatewayError
from ._control import AIMDLimiter, SpendBudget

__all__ = ["Grant", "JobLedger", "JobPermits", "Outcome", "Permit", "Report", "TooManyErrorsError"]


class TooManyErrorsError(GatewayError):
    """More rows of the job failed than its ``max_error_fraction`` allows."""


@attrs.frozen
class Outcome:
    """What became of one permit: ``charged`` None when unknown (counted as spent)."""

    lease: int
    token: int
    charged: Decimal | None = Decimal(0)
    shows_price: bool = False
    throttled: bool = False
    succeeded: bool = False


@attrs.frozen
class Report:
    """What a worker tells the ledger: settled permits, and what it learned."""

    outcomes: tuple[Outcome, ...] = ()
    retry_after: float | None = None  # a 429 asked the job to wait this long
    funds_out: bool = False  # a 402 was met
    reached: bool = False  # the Gateway answered a call
    rows_ok: int = 0
    rows_failed: int = 0


@attrs.frozen
class Grant:
    """The ledger's answer: ``permits`` calls may be sent, the first after ``delay``
    seconds and the next ones ``interval`` apart; 0 permits with a reason flag set means
    none will come."""

    lease: int
    token: int
    permits: int
    delay: float = 0.0
    interval: float = 0.0
    exhausted: bool = False
    funds_out: bool = False
    reached: bool = False
    stop: str | None = None


@attrs.frozen(kw_only=True)
class _Lease:
    token: int
    left: int
    timer: asyncio.TimerHandle


class JobLedger:
    """The job's controls in one place (one event loop, one Ray actor)."""

    def __init__(
        self,
        *,
        concurrency: int,
        max_spend: Decimal | None = None,
        requests_per_second: float | None = None,
        max_error_fraction: float | None = None,
        lease_seconds: float = 600.0,
    ) -> None:
        self._concurrency = concurrency
        self._max_spend = max_spend
        self._interval = 0.0 if requests_per_second is None else 1.0 / requests_per_second
        self._max_error_fraction = max_error_fraction
        self._lease_seconds = lease_seconds
        # Built on first use: their futures and events belong to the serving loop.
        self._limiter: AIMDLimiter | None = None
        self._budget: SpendBudget | None = None
        self._leases: dict[int, _Lease] = {}
        self._next_lease = 0
        self._next_send = 0.0
        self._paused_until = 0.0
        self._exhausted = False
        self._funds_out = False
        self._reached = False
        self._stop: str | None = None
        self._rows_ok = 0
        self._rows_failed = 0

    @property
    def spent(self) -> Decimal:
        """Credits settled so far (unknown outcomes at the rate); 0 without ``max_spend``."""
        return Decimal(0) if self._budget is None else self._budget.spent

    @property
    def concurrency(self) -> int:
        """The job's AIMD limit on calls in flight right now."""
        return self._concurrency if self._limiter is None else self._limiter.limit

    def _controls(self) -> tuple[AIMDLimiter, SpendBudget | None]:
        if self._limiter is None:
            self._limiter = AIMDLimiter(self._concurrency)
            if self._max_spend is not None:
                self._budget = SpendBudget(self._max_spend, Decimal(0))
        return self._limiter, self._budget

    async def acquire(self, want: int, report: Report) -> Grant:
        """Settle ``report``, then wait for at least one permit (up to ``want``): a free
        AIMD slot and, under ``max_spend``, a reservation that fits the budget."""
        self.report(report)
        limiter, budget = self._controls()
        if self._closed():
            return self._grant(-1, limiter.epoch, 0)
        token = await limiter.acquire()
        if budget is not None and not await budget.reserve():
            limiter.release(token)
            self._exhausted = True
        if self._closed():  # ended while we waited
            if not self._exhausted and budget is not None:
                budget.settle(Decimal(0), shows_price=False)
            if not self._exhausted:
                limiter.release(token)
            return self._grant(-1, token, 0)
        permits = 1
        while permits < want and self._one_more(limiter, budget):
            permits += 1
        return self._lend(token, permits)

    def _one_more(self, limiter: AIMDLimiter, budget: SpendBudget | None) -> bool:
        token = limiter.try_acquire()
        if token is None:
            return False
        if budget is not None and not budget.try_reserve():
            limiter.release(token)
            return False
        return True

    def _closed(self) -> bool:
        return self._exhausted or self._funds_out or self._stop is not None

    def _lend(self, token: int, permits: int) -> Grant:
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self._next_send, self._paused_until)
        self._next_send = start + permits * self._interval
        lease = self._next_lease
        self._next_lease += 1
        expires = start - now + permits * self._interval + self._lease_seconds
        timer = loop.call_later(expires, self._expire, lease)
        self._leases[lease] = _Lease(token=token, left=permits, timer=timer)
        return self._grant(lease, token, permits, delay=start - now)

    def _grant(self, lease: int, token: int, permits: int, delay: float = 0.0) -> Grant:
        return Grant(
            lease,
            token,
            permits,
            delay=delay,
            interval=self._interval,
            exhausted=self._exhausted,
            funds_out=self._funds_out,
            reached=self._reached,
            stop=self._stop,
        )

    def report(self, report: Report) -> Grant:
        """Settle what a worker reports; the answer carries the job's flags (no permits)."""
        limiter, budget = self._controls()
        for outcome in report.outcomes:
            if self._take(outcome.lease):
                self._settle(limiter, budget, outcome)
        if report.retry_after is not None:
            loop = asyncio.get_running_loop()
            self._paused_until = max(self._paused_until, loop.time() + report.retry_after)
        self._funds_out = self._funds_out or report.funds_out
        self._reached = self._reached or report.reached
        self._count(report.rows_ok, report.rows_failed)
        return self._grant(-1, limiter.epoch, 0)

    def _take(self, lease: int) -> bool:
        """Count one permit of ``lease`` back; False if the lease already expired."""
        held = self._leases.get(lease)
        if held is None:
            return False
        if held.left == 1:
            held.timer.cancel()
            del self._leases[lease]
        else:
            self._leases[lease] = attrs.evolve(held, left=held.left - 1)
        return True

    @staticmethod
    def _settle(limiter: AIMDLimiter, budget: SpendBudget | None, outcome: Outcome) -> None:
        limiter.release(outcome.token, throttled=outcome.throttled, succeeded=outcome.succeeded)
        if budget is not None:
            budget.settle(outcome.charged, shows_price=outcome.shows_price)

    def _expire(self, lease: int) -> None:
        """A lease outlived every call it could cover: its holder died. Its permits may
        have been sent and charged, so they settle as unknown (at the full rate)."""
        held = self._leases.pop(lease, None)
        if held is None:
            return
        limiter, budget = self._controls()
        for _ in range(held.left):
            self._settle(limiter, budget, Outcome(lease, held.token, charged=None))

    def _count(self, ok: int, failed: int) -> None:
        self._rows_ok += ok
        self._rows_failed += failed
        fraction, total = self._max_error_fraction, self._rows_ok + self._rows_failed
        if fraction is not None and total and self._rows_failed > fraction * total:
            self._stop = self._stop or (
                f"max_error_fraction: {self._rows_failed} of the {total} rows done so far "
                f"failed, more than {fraction:g}; the job stops"
            )


Ask: TypeAlias = Callable[[int, Report], Coroutine[Any, Any, Grant]]
Tell: TypeAlias = Callable[[Report], Coroutine[Any, Any, Grant]]


@attrs.frozen
class Permit:
    """Leave to send one call, at ``send_at`` (the loop's clock) or later."""

    lease: int
    token: int
    send_at: float


class JobPermits:
    """A worker's side of the ledger: permits fetched in blocks, outcomes reported in blocks.

    ``take()`` hands out the next permit, or None once the job sends nothing more (budget
    spent, wallet empty, too many errors: see the flags). Outcomes wait for the next
    request for permits, except when a request is already out (the ledger may be waiting
    for them), a 429 asks the whole job to pause or a 402 emptied the wallet: those are
    reported at once.
    """

    def __init__(self, ask: Ask, tell: Tell, block: int = 1) -> None:
        self._ask, self._tell = ask, tell
        self._block = block  # permits asked for at once: a round trip per block, not per row
        self._free: deque[Permit] = deque()
        self._pending: list[Outcome] = []
        self._refill: asyncio.Task[None] | None = None
        self._waiting = 0
        self._telling: set[asyncio.Task[Grant]] = set()
        self.exhausted = False  # max_spend reached
        self.funds_out = False  # a 402 was met (here or elsewhere in the job)
        self.stop: str | None = None  # max_error_fraction passed: why
        self.reached = False  # some call of the job got an answer from the Gateway
        self._told_reached = False
        self._told_funds = False

    @property
    def ended(self) -> bool:
        return self.exhausted or self.funds_out or self.stop is not None

    async def take(self) -> Permit | None:
        self._waiting += 1
        try:
            while not self._free:
                if self.ended:
                    return None
                if self._refill is None:
                    self._refill = asyncio.create_task(self._fetch())
                await asyncio.shield(self._refill)
        finally:
            self._waiting -= 1
        permit = self._free.popleft()
        loop = asyncio.get_running_loop()
        if permit.send_at > loop.time():
            await asyncio.sleep(permit.send_at - loop.time())  # the job's pace or pause
        return permit

    async def _fetch(self) -> None:
        try:
            grant = await self._ask(max(self._block, self._waiting), self._report())
        finally:
            self._refill = None
        self._learn(grant)
        now = asyncio.get_running_loop().time()
        for n in range(grant.permits):
            send_at = now + grant.delay + n * grant.interval
            self._free.append(Permit(grant.lease, grant.token, send_at))

    def _learn(self, grant: Grant) -> None:
        self.exhausted = self.exhausted or grant.exhausted
        self.funds_out = self.funds_out or grant.funds_out
        self.stop = self.stop or grant.stop
        self.reached = self.reached or grant.reached

    def _report(
        self, *, retry_after: float | None = None, rows_ok: int = 0, rows_failed: int = 0
    ) -> Report:
        outcomes, self._pending = tuple(self._pending), []
        reached = self.reached and not self._told_reached
        self._told_reached = self._told_reached or reached
        self._told_funds = self.funds_out
        return Report(
            outcomes,
            retry_after=retry_after,
            funds_out=self.funds_out,
            reached=reached,
            rows_ok=rows_ok,
            rows_failed=rows_failed,
        )

    def done(self, outcome: Outcome, *, retry_after: float | None = None) -> None:
        """Record a permit's outcome; report it now if someone may be waiting for it."""
        self._pending.append(outcome)
        if retry_after is not None or self._news():
            self._send_report(retry_after)
        elif self._refill is not None and not self._telling:
            self._send_report(None)  # one report at a time while the ledger may wait for it

    def _send_report(self, retry_after: float | None) -> None:
        task = asyncio.create_task(self._tell(self._report(retry_after=retry_after)))
        self._telling.add(task)
        task.add_done_callback(self._told)

    def _news(self) -> bool:
        """A 402 the ledger has not heard of: every other worker should stop sending."""
        return self.funds_out and not self._told_funds

    def _told(self, task: asyncio.Task[Grant]) -> None:
        self._telling.discard(task)
        if not task.cancelled() and task.exception() is None:
            self._learn(task.result())
        if self._pending and self._refill is not None and not self._telling:
            self._send_report(None)  # what ended meanwhile, while the ledger still waits

    async def close(self, rows_ok: int, rows_failed: int) -> None:
        """End of a batch: hand back unused permits, report everything, learn the verdict."""
        while self._free:
            permit = self._free.popleft()
            self._pending.append(Outcome(permit.lease, permit.token))
        if self._telling:
            await asyncio.gather(*self._telling, return_exceptions=True)
        self._learn(await self._tell(self._report(rows_ok=rows_ok, rows_failed=rows_failed)))

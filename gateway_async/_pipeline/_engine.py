"""The ingest engine: sources → uploads → runs → the caller, joined by bounded queues.

One background task owns a TaskGroup of a feeder, ``upload_concurrency`` upload workers and
``run_concurrency`` run workers (the number running at once is further held by an AIMD
limiter). A semaphore of ``window`` slots is taken before a source is read and given back
when its item reaches the caller, so memory is bounded whatever the number of sources, and a
slow stage (or a slow caller) holds back everything before it, down to the source iterator.

Ending: sources run out → sentinels flow down the queues → the TaskGroup ends. ``stop()`` and
an exhausted ``max_spend`` stop the reading and let everything already read finish. An error
that dooms every item (401, 402, 403, a failing source iterator) cancels the TaskGroup: what
finished is yielded, then the error is raised. Cancelling the caller cancels everything.
The journal is only ever written with facts, so any of these endings leaves it consistent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, Any, Self

import attrs

from .._errors import (
    APIStatusError,
    AuthenticationError,
    GatewayError,
    InsufficientFundsError,
    InvalidRequestError,
    PermissionDeniedError,
    RateLimitError,
)
from .._journal import Journal, RunRecord
from .._transport import new_idempotency_key
from ..models import MediaRef, Run, RunRequest
from ._control import AIMDLimiter, SpendBudget
from ._settings import Settings, input_field_of
from ._sources import Identity, SourceReader, content_sha256, identify, journaled
from ._types import BudgetExhaustedError, EventKind, IngestEvent, IngestItem, IngestSummary, Tally

if TYPE_CHECKING:
    from .._client import Gateway

__all__ = ["Ingest"]

# A 401 or 402 meets every later call too; 403 does as well here, since all runs of one
# ingest use the same model. Uploads are not refused per model, so 403 there is per item.
_FATAL_UPLOAD: tuple[type[GatewayError], ...] = (AuthenticationError, InsufficientFundsError)
_FATAL_RUN: tuple[type[GatewayError], ...] = (*_FATAL_UPLOAD, PermissionDeniedError)
_MAX_THROTTLED = 8  # 429s on one item (after the transport's own retries) before giving up


@attrs.define
class _Work:
    """One source on its way through the stages."""

    index: int
    source: Any
    identity: Identity = attrs.Factory(Identity)
    media: MediaRef | None = None
    attempts: int = 0


class Ingest:
    """A running ingest: iterate it for ``IngestItem``s; ``summary`` holds the counts.

    Use ``async for item in gw.ingest(...)``. If you may leave the loop early, use
    ``async with gw.ingest(...) as items: async for item in items: ...`` (or call
    ``aclose()``) so the background work stops at once. ``stop()`` ends it gracefully.
    """

    def __init__(
        self, gw: Gateway, sources: Iterable[Any] | AsyncIterable[Any], settings: Settings
    ) -> None:
        self._gw = gw
        self._reader = SourceReader(sources)
        self._s = settings
        self._tally = Tally()
        self._slots = asyncio.Semaphore(settings.window)
        self._uploads: asyncio.Queue[_Work | None] = asyncio.Queue(settings.upload_concurrency)
        self._runs: asyncio.Queue[_Work | None] = asyncio.Queue(settings.run_concurrency)
        self._out: asyncio.Queue[IngestItem | None] = asyncio.Queue()  # bounded by the slots
        self._limiter = AIMDLimiter(settings.run_concurrency)
        self._budget: SpendBudget | None = None
        self._journal: Journal | None = None
        self._input_field: str | None = None
        self._engine: asyncio.Task[None] | None = None
        self._feeder: asyncio.Task[None] | None = None
        self._pulling = False
        self._stop_reason: str | None = None
        self._error: BaseException | None = None
        self._ended = False
        self._reorder: dict[int, IngestItem] = {}
        self._next_index = 0
        self._uploaders_left = settings.upload_concurrency
        self._closed = False
        self._own_cancels: set[asyncio.Task[Any]] = set()
        self._uploading: set[asyncio.Task[Any]] = set()

    # -- the caller's side -----------------------------------------------------------------

    @property
    def summary(self) -> IngestSummary:
        """The counts so far; final once iteration has ended."""
        return self._tally.snapshot()

    @property
    def concurrency(self) -> int:
        """The run concurrency the AIMD limiter allows right now."""
        return self._limiter.limit

    def stop(self) -> None:
        """Read no more sources; finish those already read, then end the iteration."""
        self._request_stop("stopped")

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> IngestItem:
        if self._engine is None:
            if self._closed:
                raise StopAsyncIteration
            self._engine = asyncio.create_task(self._run(), name="gateway-ingest")
        try:
            return await self._next_item()
        except asyncio.CancelledError:
            self._tally.stopped = self._tally.stopped or "cancelled"
            await self.aclose()
            raise

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel whatever still runs and wait until it has: no task outlives this call."""
        engine = self._engine
        if engine is None:
            if not self._closed:
                self._closed = True
                await self._reader.aclose()
            return
        if not engine.done():
            self._tally.stopped = self._tally.stopped or "cancelled"
            engine.cancel()
        await asyncio.wait([engine])

    async def _next_item(self) -> IngestItem:
        while True:
            item = self._take_ready()
            if item is not None:
                self._slots.release()
                return item
            if self._ended:
                error, self._error = self._error, None
                if error is not None:
                    raise error
                raise StopAsyncIteration
            got = await self._out.get()
            if got is None:
                self._ended = True
            else:
                self._reorder[got.index] = got

    def _take_ready(self) -> IngestItem | None:
        """The next item to hand out: in input order if ``ordered`` (gaps only at the end)."""
        if not self._reorder:
            return None
        if not self._s.ordered:
            return self._reorder.popitem()[1]
        item = self._reorder.pop(self._next_index, None)
        if item is None and self._ended:
            item = self._reorder.pop(min(self._reorder))
        if item is not None:
            self._next_index = item.index + 1
        return item

    # -- the engine ------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._setup()
            async with asyncio.TaskGroup() as group:
                self._feeder = group.create_task(self._feed())
                for _ in range(self._s.upload_concurrency):
                    group.create_task(self._upload_worker())
                for _ in range(self._s.run_concurrency):
                    group.create_task(self._run_worker())
        except* Exception as group:  # a bug, or a callback of the caller that raised
            self._doom(group.exceptions[0])
        finally:
            self._tally.ended = time.monotonic()
            try:
                await self._teardown()
            finally:
                self._out.put_nowait(None)

    async def _setup(self) -> None:
        gw, s = self._gw, self._s
        model = await gw.marketplace.get_model(s.model)
        if s.mode not in model.modes:
            raise InvalidRequestError(
                f"mode: {s.model} has modes {', '.join(model.modes)}, not {s.mode!r}", field="mode"
            )
        self._input_field = input_field_of(s, model)
        if s.max_spend is not None:
            wallet = await gw.billing.wallet()
            self._budget = SpendBudget(min(s.max_spend, wallet.balance), model.price_per_run)
        if isinstance(s.journal, Journal):
            self._journal = s.journal
        elif s.journal is not None:
            self._journal = await Journal.open(s.journal)

    async def _teardown(self) -> None:
        try:
            await self._reader.aclose()
        finally:
            if self._journal is not None and self._journal is not self._s.journal:
                await self._journal.aclose()

    def _doom(self, error: BaseException) -> None:
        """An error every later item would meet: read no more, cancel uploads, let runs end.

        Runs in flight are let finish (they may already be paid for); what is queued is
        dropped, and the error is raised once the finished items are handed out.
        """
        if self._error is None:
            self._error = error
            self._tally.stopped = "error"
        self._request_stop("error")
        for task in self._uploading:
            self._cancel_own(task)

    def _drop(self) -> None:
        """Abandon a queued item after a doom: it is not handed out (the journal resumes it)."""
        self._slots.release()

    def _request_stop(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
            self._tally.stopped = self._tally.stopped or reason
        if self._pulling and self._feeder is not None:
            self._cancel_own(self._feeder)  # only while it awaits the source: nothing is lost

    def _cancel_own(self, task: asyncio.Task[Any]) -> None:
        """Cancel one stage task for the pipeline's own reasons (see ``_absorb_cancel``)."""
        if task not in self._own_cancels:
            self._own_cancels.add(task)
            task.cancel()

    def _absorb_cancel(self) -> bool:
        """In a stage task: True if the cancellation it got was only the pipeline's own one.

        The whole ingest may be cancelled at the same time; that one must never be swallowed,
        or the TaskGroup would wait forever for a task that carries on.
        """
        task = asyncio.current_task()
        if task is None or task not in self._own_cancels:
            return False
        self._own_cancels.discard(task)
        return task.uncancel() == 0

    def _event(self, kind: EventKind, work: _Work, nbytes: int = 0) -> None:
        if self._s.on_event is not None:
            self._s.on_event(
                IngestEvent(kind=kind, index=work.index, source=work.source, nbytes=nbytes)
            )

    def _emit(self, work: _Work, **outcome: Any) -> None:
        item = IngestItem(index=work.index, source=work.source, media_ref=work.media, **outcome)
        self._tally.count(item)
        kind: EventKind = "skipped" if item.skipped else "succeeded" if item.ok else "failed"
        self._event(kind, work)
        self._out.put_nowait(item)

    # -- stage 1: read sources -------------------------------------------------------------

    async def _feed(self) -> None:
        index = 0
        try:
            while self._stop_reason is None:
                await self._slots.acquire()
                more, source = (False, None) if self._stop_reason else await self._pull()
                if not more:
                    self._slots.release()
                    break
                work = _Work(index, source)
                index += 1
                self._tally.total += 1
                self._event("read", work)
                await self._uploads.put(work)
        except asyncio.CancelledError:
            if not self._absorb_cancel():
                raise  # the whole ingest is being cancelled
            self._slots.release()  # stop() interrupted the pull; the slot it held is free
        for _ in range(self._s.upload_concurrency):
            await self._uploads.put(None)

    async def _pull(self) -> tuple[bool, Any]:
        self._pulling = True
        try:
            return await self._reader.next()
        except Exception as exc:  # the caller's source iterator failed
            self._doom(exc)
            return False, None
        finally:
            self._pulling = False

    # -- stage 2: media --------------------------------------------------------------------

    async def _upload_worker(self) -> None:
        while (work := await self._uploads.get()) is not None:
            if await self._obtain_media(work):
                await self._runs.put(work)
        self._uploaders_left -= 1
        if not self._uploaders_left:
            for _ in range(self._s.run_concurrency):
                await self._runs.put(None)

    async def _obtain_media(self, work: _Work) -> bool:
        """Give ``work`` its media; False if it already ended here (skipped or failed)."""
        if self._error is not None:
            self._drop()
            return False
        if self._stop_reason == "budget":
            self._emit(work, error=_not_run())
            return False
        try:
            if isinstance(work.source, MediaRef):
                work.media = work.source
                return True
            if self._journal is not None and journaled(work.source):
                return await self._recall_or_upload(work, self._journal)
            work.media = await self._upload(work)
            return True
        except asyncio.CancelledError:
            if not self._absorb_cancel():
                raise
        except _FATAL_UPLOAD as exc:
            self._doom(exc)
        except Exception as exc:
            self._emit(work, error=exc)
            return False
        self._drop()  # doomed while uploading
        return False

    async def _recall_or_upload(self, work: _Work, journal: Journal) -> bool:
        """Skip what the journal has done, reuse what it has uploaded, upload the rest."""
        ident = identify(work.source)
        if ident.key is None:  # bytes are named by their content
            ident = await content_sha256(work.source, ident)
        key = ident.key
        assert key is not None
        known = await journal.recall(
            key, self._s.job, size=ident.size, mtime_ns=ident.mtime_ns, sha256=ident.sha256
        )
        work.attempts = known.attempts
        if known.sha256 is None:  # new, or touched since last time: hash it
            ident = await content_sha256(work.source, ident)
        sha256 = known.sha256 or ident.sha256
        assert sha256 is not None
        media = known.media or await journal.media_for(sha256)
        if media is not None and known.sha256 is None:  # a new name for known content
            await journal.remember(key, ident, media)
        if known.done(sha256):
            work.media = media
            self._emit(work, skipped=True)
            return False
        if media is None:
            media = await self._upload(work)
            media = attrs.evolve(media, sha256=media.sha256 or sha256)
            await journal.remember(key, ident, media)
        else:
            self._tally.reused += 1
            self._event("reused", work)
        work.media = media
        work.identity = attrs.evolve(ident, sha256=media.sha256)
        return True

    async def _upload(self, work: _Work) -> MediaRef:
        task = asyncio.current_task()
        assert task is not None
        self._uploading.add(task)  # so that a doom can cancel it
        try:
            media = await self._gw.media.upload(work.source, checksum=self._s.checksum)
        finally:
            self._uploading.discard(task)
        self._tally.uploaded += 1
        self._tally.bytes += media.size
        self._event("uploaded", work, media.size)
        return media

    # -- stage 3: runs ---------------------------------------------------------------------

    async def _run_worker(self) -> None:
        while (work := await self._runs.get()) is not None:
            await self._run_one(work)

    async def _run_one(self, work: _Work) -> None:
        try:
            request = self._request(work)
        except Exception as exc:  # the caller's input= or params= failed, or was invalid
            self._emit(work, error=exc)
            return
        for attempt in range(_MAX_THROTTLED + 1):
            if self._error is not None:
                self._drop()
                return
            if self._stop_reason == "budget" or not await self._reserve():
                self._emit(work, error=_not_run())
                return
            outcome = await self._send(request)
            if isinstance(outcome, RateLimitError) and attempt < _MAX_THROTTLED:
                self._pause_client(outcome, attempt)
                continue
            await self._record(work, outcome)
            if isinstance(outcome, Run):
                self._emit(work, run=outcome)
            elif isinstance(outcome, _FATAL_RUN):
                self._doom(outcome)
                self._drop()
            else:
                self._emit(work, error=outcome)
            return

    def _pause_client(self, error: RateLimitError, attempt: int) -> None:
        """Hold every request of the client (not only this task's) before the next try."""
        wait = error.retry_after
        self._gw._transport.pause(self._gw.retry.backoff(attempt) if wait is None else wait)

    def _request(self, work: _Work) -> RunRequest:
        assert work.media is not None
        s = self._s
        return RunRequest(
            model=s.model,
            mode=s.mode,
            scope=s.scope,
            input=s.input_for(self._input_field, work.media, work.source),
            params=s.params_for(work.source),
            idempotency_key=self._idempotency_key(work),
        )

    def _idempotency_key(self, work: _Work) -> str:
        """Deterministic with a journal, so a resumed run replays instead of running twice."""
        ident = work.identity
        if self._journal is None or ident.key is None or ident.sha256 is None:
            return new_idempotency_key()
        return self._journal.run_key(ident.key, ident.sha256, self._s.job, work.attempts)

    async def _reserve(self) -> bool:
        if self._budget is None or await self._budget.reserve():
            return True
        self._request_stop("budget")
        return False

    async def _send(self, request: RunRequest) -> Run | Exception:
        """One run under the AIMD limit and the budget; errors are returned, not raised."""
        token = await self._limiter.acquire()
        outcome: Run | Exception | None = None
        try:
            outcome = await self._gw.runs.send(request)
        except Exception as exc:
            outcome = exc
        finally:
            run = outcome if isinstance(outcome, Run) else None
            self._limiter.release(
                token,
                throttled=isinstance(outcome, RateLimitError),
                succeeded=run is not None and run.succeeded,
            )
            if self._budget is not None:
                self._budget.settle(run.usage.credits if run is not None else None)
        return outcome

    async def _record(self, work: _Work, outcome: Run | Exception) -> None:
        """Journal a run's outcome; an attempt that surely ended moves to a new key."""
        ident = work.identity
        if self._journal is None or ident.key is None or ident.sha256 is None:
            return
        if isinstance(outcome, Run):
            status, run_id, credits = outcome.status, outcome.id, outcome.usage.credits
            final = not outcome.succeeded
        else:
            status, run_id, credits = "error", None, None
            # A 4xx answer means the run never executed; anything else may have executed.
            final = isinstance(outcome, APIStatusError) and outcome.status_code < 500
        await self._journal.record_run(
            RunRecord(
                key=ident.key,
                job=self._s.job,
                sha256=ident.sha256,
                status=status,
                run_id=run_id,
                credits=credits,
                final_failure=final,
            )
        )


def _not_run() -> BudgetExhaustedError:
    return BudgetExhaustedError("not run: max_spend would have been exceeded")

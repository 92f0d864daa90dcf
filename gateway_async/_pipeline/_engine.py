"""The ingest engine: sources → uploads → runs → the caller, joined by bounded queues.

One background task owns a TaskGroup of a feeder, ``upload_concurrency`` upload workers and
``run_concurrency`` run workers (the number running at once is further held by an AIMD
limiter). A semaphore of ``window`` slots is taken before a source is read and given back
when its item reaches the caller, so memory is bounded whatever the number of sources, and a
slow stage (or a slow caller) holds back everything before it, down to the source iterator.

Ending: sources run out → sentinels flow down the queues → the TaskGroup ends. ``stop()`` and
an exhausted ``max_spend`` stop the reading and let everything already read finish. An error
that dooms every item (401, 402, 403, a failing source iterator) stops the reading and
cancels the uploads: what finished is yielded, then the error is raised. Cancelling the
caller cancels everything.

Lifetime: the iteration ends when the runner task (the one that owns the TaskGroup) is done,
and a task is done however it ended, even cancelled before its first step; nothing waits for
a marker that some task must remember to send. ``aclose()``, a cancelled consumer and leaving
``async with`` all take one path (``aclose``): cancel the runner, wait for it. One task
consumes an ingest; another task iterating it at the same time is refused at once.

Exactly once: with a ``job`` (or a journal, whose random id then stands for one) every
upload is named by its content and every run by its identity, (job, the exact request body
with each media input standing for its content's sha256); their keys derive from it, so any
process on any machine that redoes an item sends the same keys and the Gateway replays
instead of executing again. A journal is a cache of those identities: a run it knows is
done is skipped without a request, and a journaled run is written ahead (its key and exact
body) before it is sent, every attempt sending the journal's copy; the engine only asks the
journal (``recall``, ``begin_run``, ``settle_run``), which owns the states. So any of these
endings, or a crash between any two steps, leaves a state the next run resumes without
running anything twice.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Self

import attrs

from .._convert import dumps
from .._errors import (
    AuthenticationError,
    ConfigurationError,
    GatewayError,
    InsufficientFundsError,
    InvalidRequestError,
    PermissionDeniedError,
    RateLimitError,
)
from .._identity import idempotency_key
from .._journal import Intent, Journal
from .._schema import check_input
from .._telemetry import Attributes
from .._transport import new_idempotency_key
from ..models import MediaRef, Run, RunRequest
from ._control import AIMDLimiter, SpendBudget, charge_of
from ._settings import Settings, input_field_of
from ._sources import Identity, SourceReader, content_sha256, identify, journaled
from ._tracing import Traces
from ._types import BudgetExhaustedError, EventKind, IngestEvent, IngestItem, IngestSummary, Tally

if TYPE_CHECKING:
    from .._client import Gateway

__all__ = ["Ingest"]

# A 401 or 402 meets every later call too; 403 does as well here, since all runs of one
# ingest use the same model. Uploads are not refused per model, so 403 there is per item.
_FATAL_UPLOAD: tuple[type[GatewayError], ...] = (AuthenticationError, InsufficientFundsError)
_FATAL_RUN: tuple[type[GatewayError], ...] = (*_FATAL_UPLOAD, PermissionDeniedError)
# What stands for the media in the check of a model's other required fields at setup.
_PROBE = MediaRef(media_ref="mref_probe", size=0, content_type="application/octet-stream")
_MAX_THROTTLED = 8  # 429s on one item (after the transport's own retries) before giving up


@attrs.define
class _Work:
    """One source on its way through the stages."""

    index: int
    source: Any
    identity: Identity = attrs.Factory(Identity)  # the run's identity key and content hash
    media: MediaRef | None = None
    request: RunRequest | None = None  # built once: the caller's input= and params= run once
    intent: Intent | None = None  # the journal's written-ahead attempt, once there is one
    claim: str | None = None  # the journal key this item holds (see ``_claim``)


class Ingest:
    """A running ingest: iterate it for ``IngestItem``s; ``summary`` holds the counts.

    Use ``async for item in gw.ingest(...)``. If you may leave the loop early, use
    ``async with gw.ingest(...) as items: async for item in items: ...`` (or call
    ``aclose()``) so the background work stops at once. ``stop()`` ends it gracefully.
    One task iterates it (another one gets ``ConfigurationError``): fan out from there.
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
        self._limiter = AIMDLimiter(settings.run_concurrency)
        self._budget: SpendBudget | None = None
        self._journal: Journal | None = None
        self._namespace: str | None = None  # the job every key derives from (None: random)
        self._input_field: str | None = None
        self._schema: dict[str, Any] = {}
        self._runner: asyncio.Task[None] | None = None  # owns the TaskGroup of the stages
        self._consumer: asyncio.Task[Any] | None = None
        self._feeder: asyncio.Task[None] | None = None
        self._pulling = False
        self._stop_reason: str | None = None
        self._error: BaseException | None = None
        self._ended = False  # the runner is done: no item will be added to ``_reorder``
        self._reported = False  # the ending (an error, or StopAsyncIteration) was raised
        self._reorder: dict[int, IngestItem] = {}  # finished items not yet handed out
        self._changed = asyncio.Event()  # an item finished, or the runner ended
        self._next_index = 0
        self._uploaders_left = settings.upload_concurrency
        self._closed = False
        self._own_cancels: set[asyncio.Task[Any]] = set()
        self._uploading: set[asyncio.Task[Any]] = set()
        self._claims: dict[str, asyncio.Event] = {}
        self._traces = Traces(gw._transport.telemetry, settings.trace, _described(settings))

    # -- the caller's side -----------------------------------------------------------------

    def __repr__(self) -> str:
        s = self._s
        into = f" into {s.scope!r}" if s.scope is not None else ""
        if self._runner is None:
            state = "closed" if self._closed else "not started"
        else:
            state = "running" if not self._runner.done() else "ended"
        return f"<Ingest {s.model} {s.mode}{into}, {state}: {self.summary}>"

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
        self._claim_consumer()
        if self._runner is None:
            if self._closed:
                raise StopAsyncIteration
            self._runner = asyncio.create_task(self._traced_run(), name="gateway-ingest")
            self._runner.add_done_callback(lambda _: self._changed.set())
        try:
            return await self._next_item(self._runner)
        except asyncio.CancelledError:
            self._tally.stopped = self._tally.stopped or "cancelled"
            await self.aclose()
            raise

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel whatever still runs and wait until it has: no task outlives this call.

        The one way an ingest ends early: a cancelled consumer and leaving ``async with``
        come here too. Iterating after it ends the iteration (items not yet handed out are
        dropped; a journal resumes them).
        """
        self._closed = True
        runner = self._runner
        if runner is not None:
            if not runner.done():
                self._tally.stopped = self._tally.stopped or "cancelled"
                runner.cancel()
            await asyncio.wait([runner])
            if not runner.cancelled():
                runner.exception()  # retrieved: the consumer will not be told after a close
        # The runner closes the reader as it ends, unless it was cancelled before its first
        # step (or never made): closing twice does nothing.
        await self._reader.aclose()

    def _claim_consumer(self) -> None:
        """One task consumes an ingest; another one iterating it at the same time is refused.

        Two consumers would each wait for items the other took, and the end reaches both
        only because it is a state; but which of them gets what is then a matter of timing.
        """
        task = asyncio.current_task()
        consumer = self._consumer
        if (
            consumer is not None
            and consumer is not task
            and not consumer.done()
            and not (self._ended and self._reported)
        ):
            raise ConfigurationError(
                "this ingest is already being iterated by another task; an ingest has one "
                "consumer: iterate it in one task and fan its items out from there (e.g. "
                "onto an asyncio.Queue read by your workers)"
            )
        self._consumer = task

    async def _next_item(self, runner: asyncio.Task[None]) -> IngestItem:
        while True:
            self._ended = runner.done()
            item = self._take_ready()
            if item is not None:
                self._slots.release()
                return item
            if self._ended:
                raise self._ending(runner)
            self._changed.clear()
            await self._changed.wait()

    def _ending(self, runner: asyncio.Task[None]) -> BaseException:
        """What ends the iteration: the doom's error once, then StopAsyncIteration."""
        error = None
        if not self._reported and not self._closed:
            error = self._error
            if error is None and not runner.cancelled():
                error = runner.exception()  # a bug outside the TaskGroup's reach
        self._reported = True
        self._error = None
        return error if error is not None else StopAsyncIteration()

    def _take_ready(self) -> IngestItem | None:
        """The next item to hand out: in input order if ``ordered`` (gaps only at the end)."""
        if not self._reorder:
            return None
        if not self._s.ordered:  # the oldest first
            return self._reorder.pop(next(iter(self._reorder)))
        item = self._reorder.pop(self._next_index, None)
        if item is None and self._ended:
            item = self._reorder.pop(min(self._reorder))
        if item is not None:
            self._next_index = item.index + 1
        return item

    # -- the engine ------------------------------------------------------------------------

    def _traced_run(self) -> Coroutine[Any, Any, None]:
        """``_run`` inside the ``gateway.ingest`` span (its items' spans descend from it)."""
        observer = self._gw._transport.telemetry
        if observer is None or not observer.tracing():
            return self._run()
        return observer.traced(
            "gateway.ingest",
            self._run(),
            _described(self._s),
            ending=lambda: _counts(self.summary),
        )

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
            self._traces.close()
            await self._teardown()

    async def _setup(self) -> None:
        gw, s = self._gw, self._s
        model = await gw.marketplace.cached_model(s.model)
        if s.mode not in model.modes:
            raise InvalidRequestError(
                f"mode: {s.model} has modes {', '.join(model.modes)}, not {s.mode!r}", field="mode"
            )
        self._input_field = input_field_of(s, model)
        self._schema = model.input_schema
        if self._input_field is not None:  # e.g. a model that requires a second field
            check_input({self._input_field: _PROBE}, self._schema, s.model)
        wallet = None
        if s.max_spend is not None or s.journal is not None:
            wallet = await gw.billing.wallet()
        if s.max_spend is not None and wallet is not None:
            self._budget = SpendBudget(min(s.max_spend, wallet.balance), model.price_per_run)
        if isinstance(s.journal, Journal):
            self._journal = s.journal
        elif s.journal is not None:
            self._journal = await Journal.open(s.journal)
        if self._journal is not None and wallet is not None:
            # Before any upload or run: a journal of another Gateway would skip, or fail,
            # every item here.
            await self._journal.bind(str(gw.base_url), wallet.workspace_id, s.job or "")
        self._namespace = s.job
        if s.job is None and self._journal is not None:
            self._namespace = f"journal-{self._journal.id}"

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

    def _drop(self, work: _Work) -> None:
        """Abandon a queued item after a doom: it is not handed out (the journal resumes it)."""
        self._traces.done(work.index)
        self._unclaim(work)
        self._slots.release()

    async def _claim(self, work: _Work, key: str) -> None:
        """One item per journal key at a time (e.g. the same bytes twice in the input): a
        duplicate waits for the first to end, then asks the journal, which then knows."""
        while (busy := self._claims.get(key)) is not None:
            await busy.wait()
        self._claims[key] = asyncio.Event()
        work.claim = key

    def _unclaim(self, work: _Work) -> None:
        if work.claim is not None:
            self._claims.pop(work.claim).set()
            work.claim = None

    def _request_stop(self, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
            self._tally.stopped = self._tally.stopped or reason
        feeder = self._feeder
        if self._pulling and feeder is not None and feeder is not asyncio.current_task():
            self._cancel_own(feeder)  # only while it awaits the source: nothing is lost

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
        """Tell ``on_event``; like every observer, one that raises changes nothing (the
        failure is logged once and counted in ``Gateway.observer_failures``)."""
        if self._s.on_event is not None:
            event = IngestEvent(kind=kind, index=work.index, source=work.source, nbytes=nbytes)
            self._gw._observers.call("on_event", self._s.on_event, event)

    def _emit(self, work: _Work, **outcome: Any) -> None:
        self._traces.done(work.index)
        self._unclaim(work)
        item = IngestItem(index=work.index, source=work.source, media_ref=work.media, **outcome)
        self._tally.count(item)
        kind: EventKind = "skipped" if item.skipped else "succeeded" if item.ok else "failed"
        self._event(kind, work)
        self._reorder[item.index] = item
        self._changed.set()

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
            with self._traces.inside(work.index):
                obtained = await self._obtain_media(work)
            if obtained:
                await self._runs.put(work)
        self._uploaders_left -= 1
        if not self._uploaders_left:
            for _ in range(self._s.run_concurrency):
                await self._runs.put(None)

    async def _obtain_media(self, work: _Work) -> bool:
        """Give ``work`` its media; False if it already ended here (skipped or failed)."""
        if self._error is not None:
            self._drop(work)
            return False
        if self._stop_reason == "budget":
            self._emit(work, error=_not_run())
            return False
        try:
            reused = False
            if isinstance(work.source, MediaRef):
                work.media = work.source
            elif self._journal is not None and journaled(work.source):
                reused = await self._recall_media(work, self._journal)
            else:
                work.media = await self._upload(work)
            if self._namespace is not None and not await self._identified(work, self._namespace):
                return False
            if reused:
                self._tally.reused += 1
                self._event("reused", work)
            return True
        except asyncio.CancelledError:
            if not self._absorb_cancel():
                raise
        except _FATAL_UPLOAD as exc:
            self._doom(exc)
        except Exception as exc:
            self._emit(work, error=exc)
            return False
        self._drop(work)  # doomed while uploading
        return False

    async def _recall_media(self, work: _Work, journal: Journal) -> bool:
        """The upload the journal knows for this content (hashed here, no request: True),
        or a fresh one, remembered (False)."""
        ident = await content_sha256(work.source, identify(work.source))
        assert ident.sha256 is not None
        work.media = await journal.media_for(ident.sha256)
        if work.media is not None:
            return True
        media = await self._upload(work)
        work.media = attrs.evolve(media, sha256=media.sha256 or ident.sha256)
        await journal.remember(work.media)
        return False

    async def _identified(self, work: _Work, namespace: str) -> bool:
        """Name the run by its identity (the key every process derives alike); with a
        journal, skip it if done (False) or take up its pending attempt."""
        work.request = self._request(work, None)
        work.identity = run_identity(namespace, work.request, work.media)
        key, sha256 = work.identity.key, work.identity.sha256
        assert key is not None
        await self._claim(work, key)
        journal = self._journal
        if journal is None or sha256 is None:
            return True
        known = await journal.recall(key, self._s.stage, sha256)
        if known.done:
            self._emit(work, skipped=True)
            return False
        work.intent = known.pending  # sent before, outcome unknown: send it again as it was
        return True

    async def _upload(self, work: _Work) -> MediaRef:
        task = asyncio.current_task()
        assert task is not None
        self._uploading.add(task)  # so that a doom can cancel it
        try:
            # The journal's file also resumes a multipart upload cut off by a crash.
            journal = None if self._journal is None else self._journal.path
            # A stream cannot be hashed before it is sent: its upload keeps random keys.
            job = None if isinstance(work.source, AsyncIterable) else self._namespace
            media = await self._gw.media.upload(
                work.source, checksum=self._s.checksum, journal=journal, job=job
            )
        finally:
            self._uploading.discard(task)
        self._tally.uploaded += 1
        self._tally.bytes += media.size
        self._event("uploaded", work, media.size)
        return media

    # -- stage 3: runs ---------------------------------------------------------------------

    async def _run_worker(self) -> None:
        while (work := await self._runs.get()) is not None:
            with self._traces.inside(work.index):
                await self._run_one(work)

    async def _run_one(self, work: _Work) -> None:
        try:
            request = await self._prepare(work)
        except Exception as exc:  # the caller's input= or params= failed, or was invalid
            self._emit(work, error=exc)
            return
        for attempt in range(_MAX_THROTTLED + 1):
            if self._error is not None:
                self._drop(work)
                return
            if self._stop_reason == "budget" or not await self._reserve():
                self._emit(work, error=_not_run())
                return
            outcome = await self._send(request)
            if (
                isinstance(outcome, RateLimitError)
                and attempt < _MAX_THROTTLED
                and self._pause_client(outcome, attempt)
            ):
                continue
            await self._settle(work, outcome)
            if isinstance(outcome, Run):
                self._emit(work, run=outcome)
            elif isinstance(outcome, _FATAL_RUN):
                self._doom(outcome)
                self._drop(work)
            else:
                self._emit(work, error=outcome)
            return

    def _pause_client(self, error: RateLimitError, attempt: int) -> bool:
        """Hold every request of the client (not only this task's) before the next try.

        False, pausing nothing, when the server asks for longer than the policy's
        ``max_retry_after``: one such answer must not stall every other call of the client
        for an hour, so only this item fails (with that ``RateLimitError``).
        """
        wait = error.retry_after
        if wait is None:
            wait = self._gw.retry.backoff(attempt)
        elif wait > self._gw.retry.max_retry_after:
            return False
        self._gw._transport.pause(wait)
        return True

    async def _prepare(self, work: _Work) -> RunRequest:
        """The request to send, under its identity's key (random without a job). A journaled
        item's is written ahead (key and exact body), and what is sent is the journal's copy:
        a resumed attempt re-sends its old body."""
        ident, journal = work.identity, self._journal
        request = work.request or self._request(work, None)
        if ident.key is None:
            return attrs.evolve(request, idempotency_key=new_idempotency_key())
        if journal is None or ident.sha256 is None:
            return attrs.evolve(request, idempotency_key=ident.key)
        if work.intent is None:
            body = encode_body(request.to_body())
            work.intent = await journal.begin_run(ident.key, self._s.stage, ident.sha256, body)
        return RunRequest.from_dict(
            json.loads(work.intent.body), idempotency_key=work.intent.idem_key
        )

    def _request(self, work: _Work, idempotency_key: str | None) -> RunRequest:
        assert work.media is not None
        s = self._s
        given = s.input_for(self._input_field, work.media, work.source)
        check_input(given, self._schema, s.model)
        return RunRequest(
            model=s.model,
            mode=s.mode,
            scope=s.scope,
            input=given,
            params=s.params_for(work.source),
            idempotency_key=idempotency_key,
        )

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
                self._budget.settle(charge_of(outcome), shows_price=isinstance(outcome, Run))
        return outcome

    async def _settle(self, work: _Work, outcome: Run | Exception) -> None:
        """Tell the journal what became of the item's written-ahead attempt."""
        key, journal = work.identity.key, self._journal
        if journal is not None and key is not None and work.intent is not None:
            await journal.settle_run(key, self._s.stage, work.intent, outcome)


def _described(s: Settings) -> Attributes:
    """What the ingest's spans say of it: model, mode, scope (never a source)."""
    described: dict[str, str] = {"gateway.model": s.model, "gateway.mode": s.mode}
    if s.scope is not None:
        described["gateway.scope"] = s.scope
    return described


def _counts(summary: IngestSummary) -> Attributes:
    """The ``gateway.ingest`` span's closing attributes: the summary's counts."""
    counts: dict[str, str | int | float] = {
        f"gateway.ingest.{name}": getattr(summary, name)
        for name in ("total", "uploaded", "reused", "skipped", "succeeded", "failed", "not_run")
    }
    counts["gateway.ingest.bytes"] = summary.bytes
    counts["gateway.ingest.credits"] = float(summary.credits)
    if summary.stopped is not None:
        counts["gateway.ingest.stopped"] = summary.stopped
    return counts


def _not_run() -> BudgetExhaustedError:
    return BudgetExhaustedError("not run: max_spend would have been exceeded")


def encode_body(body: dict[str, Any]) -> str:
    """The JSON text the journal stores and every attempt re-sends (the transport's own
    encoding: a MediaRef is sent as its ref, a Decimal as a string). It cannot fail: a
    ``RunRequest`` refuses values that do not encode when it is built."""
    return dumps(body).decode()


def run_identity(namespace: str, request: RunRequest, media: MediaRef | None) -> Identity:
    """A run's identity: (job, the exact request body, in which the media input stands for
    its content's sha256, so the same content uploaded again under another ``media_ref``
    is the same run). Its key is the run's Idempotency-Key in every process."""
    body = encode_body(request.to_body())
    sha256 = None if media is None else media.sha256
    if media is not None and sha256 is not None:
        body = body.replace(json.dumps(media.media_ref), json.dumps(f"sha256:{sha256}"))
    key = idempotency_key(namespace, {"run": json.loads(body)})
    return Identity(key=key, sha256=sha256)

"""Scale out on Ray Data: uploads and runs over a ``ray.data.Dataset``, exactly once.

    ds = map_uploads(ds, job="photos-2026-12", path_column="path", actors=4)
    ds = map_runs(ds, job="photos-2026-12", to_request=lambda row: RunRequest(...), actors=4)

The top floor, like user code: this module imports the public API of ``gateway_async``
(and, shared with the ingest, ``_identity``'s argument check and the ``_pipeline``
controls) and the core
never imports it, so ``import gateway_async`` stays free of
Ray. The rules it keeps:

- One ``Gateway`` per actor, created on the first batch inside the actor's own event loop
  (Ray builds the class on another thread than the loop that calls it, and a Gateway is
  bound to one loop), closed when Ray releases the actor.
- Every call made for a row carries an idempotency key derived from ``job`` and the row's
  identity, so a batch that Ray runs again (an actor or node died, a block was lost)
  replays the Gateway's first answers instead of executing and billing twice.
- Results are columns and failures are rows, and the job completes; only errors that
  doom every row (401, 403, a client that cannot be configured, a Gateway none of the
  first calls could reach, ``max_error_fraction`` passed) stop the job.
- One ledger per map stage, a small named Ray actor (``_pipeline._job``), holds the job's
  controls for every actor: ``max_spend``, ``requests_per_second``, the pause and AIMD
  limit after a 429, and the stop after a 402.
- Credentials given as arguments travel in the plan; credentials from the workers'
  ``GATEWAY_*`` environment are read on the workers only and never enter the plan.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import sys
import uuid
import warnings
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from decimal import Decimal
from typing import Any, ClassVar, Final, Literal, TypeAlias, TypedDict, TypeVar, Unpack

import attrs

try:
    import pyarrow as pa
    import ray.data
    from ray.data import ActorPoolStrategy
except ImportError as exc:
    raise ImportError(
        "gateway_async.ray needs Ray Data, which is not installed: pip install 'gateway-async[ray]'"
    ) from exc

from gateway_async import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BudgetExhaustedError,
    ConfigurationError,
    Gateway,
    GatewayError,
    InsufficientFundsError,
    InvalidRequestError,
    MediaRef,
    NotAttemptedError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    Run,
    RunRequest,
    idempotency_key,
)
from gateway_async._identity import check_job
from gateway_async._pipeline._control import charge_of
from gateway_async._pipeline._engine import run_identity
from gateway_async._pipeline._job import (
    Grant,
    JobLedger,
    JobPermits,
    Outcome,
    Permit,
    Report,
    TooManyErrorsError,
)

__all__ = [
    "ActorOptions",
    "MapOptions",
    "GatewayRunner",
    "GatewayUploader",
    "TooManyErrorsError",
    "idempotency_key",
    "map_runs",
    "map_uploads",
]

T = TypeVar("T")
Row: TypeAlias = dict[str, Any]
Values: TypeAlias = tuple[Any, ...]

# Fractional CPUs: a whole-CPU actor pool can take every CPU of a small node and starve
# the read stage that feeds it (a 2-CPU laptop deadlocks); the actors mostly wait on I/O.
DEFAULT_NUM_CPUS: Final = 0.25
_CLOSE_TIMEOUT: Final = 10.0
# Only what every row would meet stops the job: a refused key, a client that cannot be
# built. A 402 is not among them: the rows already paid for must still be written.
_DOOMING: Final = (AuthenticationError, PermissionDeniedError, ConfigurationError)
_MAX_THROTTLED: Final = 8  # 429s on one row before it fails with the RateLimitError
_MESSAGE_LIMIT: Final = 500
# map_batches' own parameters for Ray's remote options (the rest go as **ray_remote_args).
_NAMED_REMOTE_ARGS: Final = (
    "num_cpus",
    "num_gpus",
    "memory",
    "resources",
    "runtime_env",
    "accelerator_type",
    "label_selector",
    "fallback_strategy",
    "max_calls",
)
_CONTROLS: Final = ("max_spend", "requests_per_second", "max_error_fraction")
_NOT_RUN: Final = (BudgetExhaustedError.__name__, NotAttemptedError.__name__)


# -- keys and checks -----------------------------------------------------------------------


def _fail(field: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"{field}: {message}", field=field)


def _check_column(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(field, "must be the name of a column (a non-empty string)")
    return value


def _positive_int(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(field, "must be a positive integer")
    return value


def _positive_number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise _fail(field, "must be a positive number")
    return value


# -- the shared actor machinery ------------------------------------------------------------


class _Secret:
    """An API key in the plan: pickled as is, but never shown by a repr or a log line."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "'***'"


class ActorOptions(TypedDict, total=False):
    """The keyword arguments both classes (and helpers) share."""

    key_column: str | None  # a run row's identity for its key (default: its request)
    in_flight: int  # calls in flight per actor (default 32 for runs, 8 for uploads)
    api_key: str | None  # default: the worker's GATEWAY_API_KEY
    base_url: str | None  # default: the worker's GATEWAY_BASE_URL
    gateway_kwargs: Mapping[str, Any] | None  # more Gateway(...) arguments
    on_error: Literal["row", "raise"]  # an exception of your code: the row's error, or raise


class _GatewayActor:
    """What both callable classes share: the lazy per-actor client, the job's permits, the
    bound on calls in flight, the fan-out of a batch's rows, and the result columns."""

    _columns: ClassVar[tuple[tuple[str, pa.DataType], ...]]
    _in_flight_default: ClassVar[int]
    _priced: ClassVar[bool]  # the calls are charged (runs), or free (uploads)

    def __init__(
        self,
        *,
        job: str,
        key_column: str | None = None,
        in_flight: int | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        gateway_kwargs: Mapping[str, Any] | None = None,
        on_error: Literal["row", "raise"] = "row",
        control: Any = None,
        concurrency: object = None,
    ) -> None:
        self._job = check_job(job)
        self._key_column = None if key_column is None else _check_column(key_column, "key_column")
        if concurrency is not None:
            raise _fail(
                "concurrency",
                "renamed: calls in flight per actor are in_flight= (in Ray, concurrency= "
                "means actors: use actors= for those)",
            )
        in_flight = self._in_flight_default if in_flight is None else in_flight
        self._in_flight = _positive_int(in_flight, "in_flight")
        if gateway_kwargs is not None and not isinstance(gateway_kwargs, Mapping):
            raise _fail("gateway_kwargs", "must be a dict of Gateway(...) keyword arguments")
        if on_error not in ("row", "raise"):
            raise _fail("on_error", "must be 'row' (the row's error) or 'raise' (stop the job)")
        self._on_error = on_error
        self._api_key = None if api_key is None else _Secret(api_key)
        self._base_url = base_url
        self._gateway_kwargs = dict(gateway_kwargs or {})
        self._control = control
        self._gateway: Gateway | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._permits: JobPermits | None = None
        self._unreached = 0  # calls that found no Gateway before any call reached it
        self._first_batch = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(job={self._job!r})"

    def _client(self) -> tuple[Gateway, asyncio.Semaphore, JobPermits]:
        """The actor's Gateway, built in the loop that calls it (and bound to that loop)."""
        if self._gateway is None or self._slots is None or self._permits is None:
            self._loop = asyncio.get_running_loop()
            # A 429 comes back to the row (not slept through inside the transport), so
            # that the whole job pauses and narrows, not this actor alone.
            retry = self._gateway_kwargs.get("retry") or RetryPolicy()
            self._gateway = Gateway(
                api_key=None if self._api_key is None else self._api_key.value,
                base_url=self._base_url,
                **{**self._gateway_kwargs, "retry": _without_429(retry)},
            )
            # A worker process may exit with the UDF still alive (Ray's teardown): its atexit
            # hooks run while the loop's thread still runs, unlike a __del__ at finalization.
            atexit.register(_close_at_exit, weakref.ref(self))
            self._slots = asyncio.Semaphore(self._in_flight)
            self._permits = _permits_of(self._control, self._in_flight)
        return self._gateway, self._slots, self._permits

    async def __call__(self, batch: pa.Table) -> pa.Table:
        """Process one batch: every row's calls at once, at most ``in_flight`` in flight."""
        if not isinstance(batch, pa.Table):
            raise _fail(
                "batch_format",
                f'got a batch of {type(batch).__name__}: pass batch_format="pyarrow" to '
                "map_batches (or use map_runs / map_uploads, which do)",
            )
        gateway, slots, permits = self._client()
        self._first_batch = self._first_batch or max(1, min(self._in_flight, batch.num_rows))

        async def one(row: Row) -> Values:
            async with slots:
                return await self._row(gateway, permits, row)

        results = await _gather(one(row) for row in batch.to_pylist())
        failed = sum(1 for values in results if values[-2] not in (None, *_NOT_RUN))
        await permits.close(len(results) - failed, failed)
        if permits.stop is not None:
            raise TooManyErrorsError(permits.stop)
        return _with_columns(batch, self._columns, results)

    async def _row(self, gateway: Gateway, permits: JobPermits, row: Row) -> Values:
        raise NotImplementedError

    async def _call(
        self, gateway: Gateway, permits: JobPermits, call: Callable[[], Awaitable[T]]
    ) -> T | GatewayError:
        """``call()`` under the job's permits: its failure returned (or raised if it dooms
        every row); after a 429 the whole job pauses and the call is tried again."""
        for attempt in range(_MAX_THROTTLED + 1):
            permit = await permits.take()
            if permit is None:
                return _not_sent(permits)
            try:
                outcome: T | GatewayError = await call()
            except _DOOMING:
                raise
            except GatewayError as exc:
                outcome = exc
            pause = self._learn(permits, permit, outcome, _pause(gateway, outcome, attempt))
            if pause is None or attempt == _MAX_THROTTLED:
                return outcome
        raise AssertionError("unreachable")  # pragma: no cover

    def _learn(
        self, permits: JobPermits, permit: Permit, outcome: Any, pause: float | None
    ) -> float | None:
        """Report one call's outcome (with the job's pause after a 429); returns the pause."""
        if isinstance(outcome, APIConnectionError) and not isinstance(outcome, APITimeoutError):
            self._unreachable(permits, outcome)
        else:
            permits.reached = True
        permits.funds_out = permits.funds_out or isinstance(outcome, InsufficientFundsError)
        # A replay executed nothing and charged nothing (the rows a preview ran, run again).
        replayed = isinstance(outcome, Run) and outcome.replayed
        charge = charge_of(outcome) if self._priced and not replayed else Decimal(0)
        shows = not self._priced or (isinstance(outcome, Run) and not replayed)
        succeeded = not isinstance(outcome, BaseException)
        throttled = isinstance(outcome, RateLimitError)
        permits.done(
            Outcome(permit.lease, permit.token, charge, shows, throttled, succeeded),
            retry_after=pause,
        )
        return pause

    def _unreachable(self, permits: JobPermits, error: APIConnectionError) -> None:
        """No call of the job has reached the Gateway and the first ones all failed to
        connect: a wrong base URL or a Gateway down, which every row would meet too."""
        if permits.reached:
            return
        self._unreached += 1
        if self._unreached >= self._first_batch:
            raise APIConnectionError(
                f"the Gateway could not be reached: the first {self._unreached} calls of "
                f"this actor failed and no call of the job got an answer ({error.message})"
            )

    def _user_error(self, exc: Exception) -> Values:
        """An exception of the caller's code for one row: the row's error, or raised."""
        if self._on_error == "raise":
            raise exc
        return _failure(type(exc).__name__, _message(exc), len(self._columns))

    def _run_key(self, row: Row, request: RunRequest) -> str:
        """A run's identity, the same in every actor, node and rerun: the job, the stage
        (model, mode, scope, params, options) and the row's identity, its ``key_column``
        value (a null one is this row's error, naming the column), else the SDK's own run
        identity: the request body with the row's media standing for its content's sha256.
        So two stages of one job never share a key."""
        column = self._key_column
        if column is None:
            return run_identity(self._job, request, _row_media(row)).key or ""
        if column not in row:
            raise _fail("key_column", f"the dataset has no column {column!r}")
        if row[column] is None:
            raise _fail(
                "key_column",
                f"this row's {column!r} is null: each row needs its own key; fill the "
                "column, or drop key_column= to key rows by their request",
            )
        body = request.to_body()
        stage = {name: body.get(name) for name in ("model", "mode", "scope", "params", "options")}
        return idempotency_key(self._job, {"stage": stage, "row": str(row[column])})

    async def aclose(self) -> None:
        """Close the actor's Gateway, for use outside Ray (inside Ray, dropping the object
        does it). Safe to call twice; a later call builds a new Gateway."""
        gateway, self._gateway = self._gateway, None
        if gateway is not None:
            await gateway.aclose()

    def __del__(self) -> None:
        """Close the Gateway on its own loop when Ray drops the actor's UDF (a graceful
        actor exit deletes it), so no "Unclosed client session" is left behind."""
        self._close_now()

    def _close_now(self) -> None:
        gateway, loop = getattr(self, "_gateway", None), getattr(self, "_loop", None)
        self._gateway = None  # (the getattr: an __init__ that refused its arguments set none)
        if gateway is None or loop is None or loop.is_closed():
            return
        if loop.is_running() and sys.is_finalizing():
            return  # the loop's thread can never run again: nothing can close it on its loop
        if not loop.is_running():
            loop.run_until_complete(gateway.aclose())
        elif _loop_thread_is_current(loop):
            task = loop.create_task(gateway.aclose())
            _closing.add(task)  # a strong reference until it is done
            task.add_done_callback(_closing.discard)
        else:
            asyncio.run_coroutine_threadsafe(gateway.aclose(), loop).result(_CLOSE_TIMEOUT)


_closing: set[asyncio.Task[None]] = set()


def _close_at_exit(actor: weakref.ref[_GatewayActor]) -> None:
    alive = actor()
    if alive is not None:
        alive._close_now()


def _loop_thread_is_current(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def _gather(calls: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Await every call; the first exception (an error that dooms every row, a bug in
    user code) cancels the others and is raised as itself, not as an ExceptionGroup."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(call) for call in calls]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


def _with_columns(
    batch: pa.Table, columns: tuple[tuple[str, pa.DataType], ...], results: list[Values]
) -> pa.Table:
    """``batch`` with the result columns appended (replacing same-named ones from an
    earlier pass), typed explicitly so every batch has the same Arrow schema."""
    names = [name for name, _ in columns]
    table = batch.drop_columns([name for name in names if name in batch.column_names])
    for position, (name, kind) in enumerate(columns):
        values = [result[position] for result in results]
        table = table.append_column(name, pa.array(values, type=kind))
    return table


def _failure(kind: str, message: str, width: int) -> Values:
    """The values of a failed row: Nones, then the error's type and message."""
    return (None,) * (width - 2) + (kind, message)


def _message(exc: BaseException) -> str:
    """A short, one-line account of ``exc`` for its row: a status error's text already
    names its status, code, message and request id; no traceback, at most 500 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def _error(exc: GatewayError, width: int) -> Values:
    return _failure(type(exc).__name__, _message(exc), width)


def _without_429(retry: object) -> RetryPolicy:
    if not isinstance(retry, RetryPolicy):
        raise _fail("gateway_kwargs", "retry must be a RetryPolicy")
    return attrs.evolve(retry, statuses=retry.statuses - {429})


def _pause(gateway: Gateway, outcome: object, attempt: int) -> float | None:
    """How long the whole job waits after ``outcome`` (None: it was no 429, or one that
    asks for longer than the policy's ``max_retry_after``: then only its row fails)."""
    if not isinstance(outcome, RateLimitError):
        return None
    retry = gateway.retry
    if outcome.retry_after is None:
        return retry.backoff(attempt)
    return outcome.retry_after if outcome.retry_after <= retry.max_retry_after else None


def _permits_of(control: Any, in_flight: int) -> JobPermits:
    """The actor's permits: from the job's ledger actor, or from a ledger of its own when
    used outside ``map_runs`` / ``map_uploads`` (controls then hold per actor)."""
    if control is None:
        ledger = JobLedger(concurrency=in_flight)
        return JobPermits(ledger.acquire, _async(ledger.report), in_flight)

    async def ask(want: int, report: Report) -> Grant:
        grant: Grant = await control.acquire.remote(want, report)
        return grant

    async def tell(report: Report) -> Grant:
        grant: Grant = await control.report.remote(report)
        return grant

    return JobPermits(ask, tell, in_flight)


def _async(function: Callable[[Report], Grant]) -> Callable[[Report], Coroutine[Any, Any, Grant]]:
    async def call(report: Report) -> Grant:
        return function(report)

    return call


def _not_sent(permits: JobPermits) -> GatewayError:
    """Why a row gets no call: the job's budget is spent, or its wallet ran out."""
    if permits.exhausted:
        return BudgetExhaustedError("not run: max_spend would have been exceeded")
    reason = GatewayError("402 insufficient_funds on another call of this job")
    if not permits.funds_out:
        reason = GatewayError("the job is stopping (max_error_fraction)")
    return NotAttemptedError(f"not run: {reason.message}", reason=reason)


# -- runs ----------------------------------------------------------------------------------

RUN_COLUMNS: Final = (
    ("run_id", pa.string()),
    ("run_status", pa.string()),
    ("run_output", pa.string()),
    ("run_credits", pa.string()),
    ("run_error_type", pa.string()),
    ("run_error", pa.string()),
)


class GatewayRunner(_GatewayActor):
    """The async callable class behind ``map_runs``, for ``ds.map_batches`` yourself:

        ds.map_batches(GatewayRunner, fn_constructor_kwargs={"job": ..., "to_request": ...},
                       compute=ActorPoolStrategy(size=4), num_cpus=0.25,
                       batch_size=256, batch_format="pyarrow")

    Adds ``run_id``, ``run_status`` (succeeded / failed / error), ``run_output`` (JSON
    text, null unless the run succeeded), ``run_credits`` (a decimal string),
    ``run_error_type`` and ``run_error``. Used this way (not through ``map_runs``), the
    job-wide controls hold per actor.
    """

    _columns = RUN_COLUMNS
    _in_flight_default = 32
    _priced = True

    def __init__(
        self, *, job: str, to_request: Callable[[Row], RunRequest], **options: Unpack[ActorOptions]
    ) -> None:
        super().__init__(job=job, **options)
        if not callable(to_request):
            raise _fail("to_request", "must be a function of a row that returns a RunRequest")
        self._to_request = to_request

    async def _row(self, gateway: Gateway, permits: JobPermits, row: Row) -> Values:
        if row.get("upload_error_type") is not None:
            reason = f"not run: its upload failed ({row['upload_error_type']})"
            return (None, "error", None, None, NotAttemptedError.__name__, reason)
        try:
            request = self._request(row)
        except _CallerError as failed:
            return (None, "error", *self._user_error(failed.error)[2:])
        except GatewayError as exc:
            return (None, "error", *_error(exc, len(RUN_COLUMNS) - 2))
        outcome = await self._call(gateway, permits, lambda: gateway.runs.send(request))
        if isinstance(outcome, GatewayError):
            return (None, "error", *_error(outcome, len(RUN_COLUMNS) - 2))
        return _run_values(outcome)

    def _request(self, row: Row) -> RunRequest:
        try:
            request = self._to_request(row)
        except Exception as exc:
            raise _CallerError(exc) from exc
        if not isinstance(request, RunRequest):
            raise _fail("to_request", f"returned {type(request).__name__}, not a RunRequest")
        if request.idempotency_key is not None:
            return request
        return attrs.evolve(request, idempotency_key=self._run_key(row, request))


class _CallerError(Exception):
    """An exception raised by the caller's ``to_request``, carried apart from ours."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


def _run_values(run: Run) -> Values:
    error_type = run.error.code if run.error is not None else None
    message = run.error.message if run.error is not None else None
    output = json.dumps(run.output, separators=(",", ":")) if run.succeeded else None
    return (run.id, run.status, output, str(run.usage.credits), error_type, message)


# -- uploads -------------------------------------------------------------------------------

UPLOAD_COLUMNS: Final = (
    ("media_ref", pa.string()),
    ("media_size", pa.int64()),
    ("media_sha256", pa.string()),
    ("upload_error_type", pa.string()),
    ("upload_error", pa.string()),
)


class GatewayUploader(_GatewayActor):
    """The async callable class behind ``map_uploads``: uploads the file named by
    ``path_column`` and adds ``media_ref``, ``media_size``, ``media_sha256``,
    ``upload_error_type`` and ``upload_error`` (a missing or unreadable file is an
    error row)."""

    _columns = UPLOAD_COLUMNS
    _in_flight_default = 8
    _priced = False

    def __init__(
        self, *, job: str, path_column: str = "path", **options: Unpack[ActorOptions]
    ) -> None:
        super().__init__(job=job, **options)
        self._path_column = _check_column(path_column, "path_column")

    async def _row(self, gateway: Gateway, permits: JobPermits, row: Row) -> Values:
        if self._path_column not in row:
            raise _fail("path_column", f"the dataset has no column {self._path_column!r}")
        path = row[self._path_column]
        # Named by its content through the SDK's own identity (job, sha256, size): a touched
        # file is the same upload, and a rerun sends no byte the workspace holds.
        outcome = await self._call(
            gateway, permits, lambda: gateway.media.upload(path, job=self._job)
        )
        if isinstance(outcome, GatewayError):
            return _error(outcome, len(UPLOAD_COLUMNS))
        return _upload_values(outcome)


def _row_media(row: Row) -> MediaRef | None:
    """The media a ``map_uploads`` stage put in this row, with its content's sha256."""
    ref, sha256 = row.get("media_ref"), row.get("media_sha256")
    if not isinstance(ref, str) or not isinstance(sha256, str):
        return None
    size = row.get("media_size")
    return MediaRef(
        media_ref=ref, size=size if isinstance(size, int) else 0, content_type="", sha256=sha256
    )


def _upload_values(ref: MediaRef) -> Values:
    return (ref.media_ref, ref.size, ref.sha256, None, None)


# -- the job's ledger and the helpers ------------------------------------------------------


class _LedgerActor:
    """The job's ``JobLedger`` in one Ray actor, which every map actor of the stage calls.

    Async, so a request for permits that must wait (budget, AIMD) does not block the
    reports that will free them. Owned by the driver that built the plan: it ends with it.
    """

    def __init__(self, **settings: Any) -> None:
        self._ledger = JobLedger(**settings)

    async def acquire(self, want: int, report: Report) -> Grant:
        return await self._ledger.acquire(want, report)

    async def report(self, report: Report) -> Grant:
        return self._ledger.report(report)

    async def spent(self) -> Decimal:
        return self._ledger.spent


@attrs.frozen(kw_only=True)
class _JobControls:
    """The job-wide arguments of the helpers, checked on the driver."""

    max_spend: Decimal | None = None
    requests_per_second: float | None = None
    max_error_fraction: float | None = None

    def __attrs_post_init__(self) -> None:
        spend = self.max_spend
        if spend is not None and (not isinstance(spend, Decimal) or not spend.is_finite()):
            raise _fail("max_spend", "must be a Decimal of credits, e.g. Decimal('25')")
        if spend is not None and spend < 0:
            raise _fail("max_spend", "must not be negative")
        if self.requests_per_second is not None:
            _positive_number(self.requests_per_second, "requests_per_second")
        fraction = self.max_error_fraction
        if fraction is not None and (
            isinstance(fraction, bool)
            or not isinstance(fraction, int | float)
            or not 0 <= fraction < 1
        ):
            raise _fail("max_error_fraction", "must be a number in [0, 1), e.g. 0.05")


def _pool(actors: object) -> tuple[int, int]:
    """``actors=`` as Ray's pool sizes: an int (a fixed pool) or ``(min, max)``."""
    if isinstance(actors, tuple) and len(actors) == 2:
        low = _positive_int(actors[0], "actors")
        high = _positive_int(actors[1], "actors")
        if low > high:
            raise _fail("actors", f"(min, max) needs min <= max, got {actors}")
        return low, high
    size = _positive_int(actors, "actors")
    return size, size


def _remote_args(args: object, num_cpus: float) -> dict[str, Any]:
    """Ray's own options for the map actors (``max_restarts``, ``resources``,
    ``runtime_env``...), passed through; ``num_cpus`` is its own argument."""
    if args is None:
        return {"num_cpus": num_cpus}
    if not isinstance(args, Mapping) or not all(isinstance(key, str) for key in args):
        raise _fail("ray_remote_args", "must be a dict of Ray actor options")
    if "num_cpus" in args:
        raise _fail("ray_remote_args", "give num_cpus= as its own argument, not in here")
    return {**args, "num_cpus": num_cpus}


class MapOptions(ActorOptions, total=False):
    """The helpers' keyword arguments: those of the classes, and the stage's and job's."""

    actors: int | tuple[int, int]  # a fixed pool (default 4), or Ray's (min, max)
    num_cpus: float  # per actor (default 0.25)
    max_spend: Decimal | None  # credits for the whole job
    requests_per_second: float | None  # the whole job's pace
    max_error_fraction: float | None  # stop once more rows than this fraction failed
    ray_remote_args: Mapping[str, Any] | None  # Ray's actor options, passed through


def _map(
    ds: ray.data.Dataset,
    udf: type[_GatewayActor],
    batch_size: int,
    kwargs: dict[str, Any],
    options: MapOptions,
) -> ray.data.Dataset:
    """Validate, start the job's ledger, then add the map stage (nothing runs until the
    dataset is consumed)."""
    stage: dict[str, Any] = dict(options)
    low, high = _pool(stage.pop("actors", 4))
    batch_size = _positive_int(batch_size, "batch_size")
    num_cpus = _positive_number(stage.pop("num_cpus", DEFAULT_NUM_CPUS), "num_cpus")
    remote_args = _remote_args(stage.pop("ray_remote_args", None), num_cpus)
    controls = _JobControls(**{key: stage.pop(key) for key in _CONTROLS if key in stage})
    kwargs = {**kwargs, **stage}
    probe = udf(**kwargs)  # refuse bad arguments now, on the driver, not in every actor
    if not isinstance(ds, ray.data.Dataset):
        raise _fail("ds", f"must be a ray.data.Dataset, not {type(ds).__name__}")
    ledger = (
        ray.remote(_LedgerActor)
        .options(name=f"gateway_async.ray/{kwargs['job']}/{uuid.uuid4().hex}", num_cpus=0)
        .remote(concurrency=high * probe._in_flight, **attrs.asdict(controls))
    )
    named = {key: remote_args.pop(key) for key in _NAMED_REMOTE_ARGS if key in remote_args}
    with warnings.catch_warnings():
        # Ray 2.60 deprecates map_batches(**ray_remote_args) but names no parameter for
        # max_restarts or max_task_retries yet: ray_remote_args= is how they reach Ray here.
        warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated", DeprecationWarning)
        return ds.map_batches(
            udf,
            fn_constructor_kwargs={**kwargs, "control": ledger},
            compute=ActorPoolStrategy(min_size=low, max_size=high),
            batch_size=batch_size,
            batch_format="pyarrow",
            # One output row per input row: lets Ray push a later limit() ahead of the calls.
            udf_modifying_row_count=False,
            **named,
            **remote_args,
        )


def map_runs(
    ds: ray.data.Dataset,
    *,
    job: str,
    to_request: Callable[[Row], RunRequest],
    batch_size: int = 256,
    **options: Unpack[MapOptions],
) -> ray.data.Dataset:
    """Run ``to_request(row)`` for every row on a pool of actors and add the run columns
    (``run_id``, ``run_status``, ``run_output``, ``run_credits``, ``run_error_type``,
    ``run_error``). Rows whose upload failed are not run. Each run's key comes from
    ``job``, the stage (model, mode, scope, params, options) and the row's ``key_column``
    (a null value is an error row), else from the request body with the row's media
    standing for its content's sha256: a rerun of the job replays, and two stages of one
    job never collide.

    Job-wide, across every actor: ``max_spend`` (credits; rows past it are
    ``BudgetExhaustedError`` rows), ``requests_per_second``, ``max_error_fraction``, a
    pause on 429. ``actors`` is an int (4) or Ray's ``(min, max)``; ``ray_remote_args`` go
    to Ray as they are. Per actor: ``in_flight`` (32), ``num_cpus`` (0.25); and
    ``key_column``, ``api_key``, ``base_url``, ``gateway_kwargs``, ``on_error``.
    """
    return _map(ds, GatewayRunner, batch_size, {"job": job, "to_request": to_request}, options)


def map_uploads(
    ds: ray.data.Dataset,
    *,
    job: str,
    path_column: str = "path",
    batch_size: int = 64,
    **options: Unpack[MapOptions],
) -> ray.data.Dataset:
    """Upload the file named in ``path_column`` of every row and add ``media_ref``,
    ``media_size``, ``media_sha256``, ``upload_error_type`` and ``upload_error``. Each
    upload is named by ``job`` and its content (``gw.media.upload(path, job=job)``): a
    touched or renamed file is the same upload, and a rerun sends no byte the workspace
    already holds (``key_column`` applies to runs only).
    The options are those of ``map_runs`` (``in_flight`` is 8 per actor here; the Gateway
    charges runs, not uploads, so ``max_spend`` stops no upload today).
    """
    return _map(ds, GatewayUploader, batch_size, {"job": job, "path_column": path_column}, options)

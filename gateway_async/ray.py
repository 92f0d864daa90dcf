"""Scale out on Ray Data: uploads and runs over a ``ray.data.Dataset``, exactly once.

    ds = map_uploads(ds, job="photos-2026-12", path_column="path", actors=4)
    ds = map_runs(ds, job="photos-2026-12", to_request=lambda row: RunRequest(...), actors=4)

The top floor, like user code: this module imports only the public API of
``gateway_async`` (and ``_identity``'s argument check, shared with the ingest) and the core
never imports it, so ``import gateway_async`` stays free of
Ray. The rules it keeps:

- One ``Gateway`` per actor, created on the first batch inside the actor's own event loop
  (Ray builds the class on another thread than the loop that calls it, and a Gateway is
  bound to one loop), closed when Ray releases the actor.
- Every call made for a row carries an idempotency key derived from ``job`` and the row's
  identity, so a batch that Ray runs again (an actor or node died, a block was lost)
  replays the Gateway's first answers instead of executing and billing twice.
- Results are columns and failures are rows; only errors that doom every row (401, 402,
  a client that cannot be configured) stop the job, raised as themselves.
- Credentials given as arguments travel in the plan; credentials from the workers'
  ``GATEWAY_*`` environment are read on the workers only and never enter the plan.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, ClassVar, Final, TypeAlias, TypedDict, TypeVar, Unpack

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
    AuthenticationError,
    ConfigurationError,
    Gateway,
    GatewayError,
    InsufficientFundsError,
    InvalidRequestError,
    MediaRef,
    NotAttemptedError,
    PermissionDeniedError,
    Run,
    RunRequest,
    idempotency_key,
)
from gateway_async._identity import check_job

__all__ = [
    "ActorOptions",
    "GatewayRunner",
    "GatewayUploader",
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
_RUN_DOOMING: Final = (AuthenticationError, InsufficientFundsError, ConfigurationError)
# A key refused for uploads is refused for every file (as in ``gw.media.upload_many``).
_UPLOAD_DOOMING: Final = (*_RUN_DOOMING, PermissionDeniedError)


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

    key_column: str | None  # the row's identity for its keys (default: body / file)
    concurrency: int  # calls in flight per actor (default 32 for runs, 8 for uploads)
    api_key: str | None  # default: the worker's GATEWAY_API_KEY
    base_url: str | None  # default: the worker's GATEWAY_BASE_URL
    gateway_kwargs: Mapping[str, Any] | None  # more Gateway(...) arguments


class _GatewayActor:
    """What both callable classes share: the lazy per-actor client, the bound on calls in
    flight, the fan-out of a batch's rows, and the result columns."""

    _columns: ClassVar[tuple[tuple[str, pa.DataType], ...]]
    _dooming: ClassVar[tuple[type[GatewayError], ...]]
    _concurrency_default: ClassVar[int]

    def __init__(
        self,
        *,
        job: str,
        key_column: str | None = None,
        concurrency: int | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        gateway_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self._job = check_job(job)
        self._key_column = None if key_column is None else _check_column(key_column, "key_column")
        concurrency = self._concurrency_default if concurrency is None else concurrency
        self._concurrency = _positive_int(concurrency, "concurrency")
        if gateway_kwargs is not None and not isinstance(gateway_kwargs, Mapping):
            raise _fail("gateway_kwargs", "must be a dict of Gateway(...) keyword arguments")
        self._api_key = None if api_key is None else _Secret(api_key)
        self._base_url = base_url
        self._gateway_kwargs = dict(gateway_kwargs or {})
        self._gateway: Gateway | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(job={self._job!r})"

    def _client(self) -> tuple[Gateway, asyncio.Semaphore]:
        """The actor's Gateway, built in the loop that calls it (and bound to that loop)."""
        if self._gateway is None or self._slots is None:
            self._loop = asyncio.get_running_loop()
            self._gateway = Gateway(
                api_key=None if self._api_key is None else self._api_key.value,
                base_url=self._base_url,
                **self._gateway_kwargs,
            )
            self._slots = asyncio.Semaphore(self._concurrency)
        return self._gateway, self._slots

    async def __call__(self, batch: pa.Table) -> pa.Table:
        """Process one batch: every row's calls at once, at most ``concurrency`` in flight."""
        gateway, slots = self._client()

        async def one(row: Row) -> Values:
            async with slots:
                return await self._row(gateway, row)

        results = await _gather(one(row) for row in batch.to_pylist())
        return _with_columns(batch, self._columns, results)

    async def _row(self, gateway: Gateway, row: Row) -> Values:
        raise NotImplementedError

    def _key(self, row: Row, stage: str, fallback: Callable[[], object]) -> str:
        """The row's key for ``stage``: from ``key_column`` if given, else from ``fallback``."""
        if self._key_column is not None:
            if self._key_column not in row:
                raise _fail("key_column", f"the dataset has no column {self._key_column!r}")
            return idempotency_key(self._job, [stage, str(row[self._key_column])])
        return idempotency_key(self._job, [stage, fallback()])

    async def aclose(self) -> None:
        """Close the actor's Gateway, for use outside Ray (inside Ray, dropping the object
        does it). Safe to call twice; a later call builds a new Gateway."""
        gateway, self._gateway = self._gateway, None
        if gateway is not None:
            await gateway.aclose()

    def __del__(self) -> None:
        """Close the Gateway on its own loop when Ray drops the actor's UDF (a graceful
        actor exit deletes it), so no "Unclosed client session" is left behind."""
        gateway, loop = getattr(self, "_gateway", None), getattr(self, "_loop", None)
        self._gateway = None  # (the getattr: an __init__ that refused its arguments set none)
        if gateway is None or loop is None or loop.is_closed():
            return
        if not loop.is_running():
            loop.run_until_complete(gateway.aclose())
        elif _loop_thread_is_current(loop):
            task = loop.create_task(gateway.aclose())
            _closing.add(task)  # a strong reference until it is done
            task.add_done_callback(_closing.discard)
        else:
            asyncio.run_coroutine_threadsafe(gateway.aclose(), loop).result(_CLOSE_TIMEOUT)


_closing: set[asyncio.Task[None]] = set()


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


def _error(exc: GatewayError, width: int) -> Values:
    """The values of a failed row: Nones, then the error's type and message."""
    return (None,) * (width - 2) + (type(exc).__name__, str(exc))


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
    text), ``run_credits`` (a decimal string), ``run_error_type`` and ``run_error``.
    """

    _columns = RUN_COLUMNS
    _dooming = _RUN_DOOMING
    _concurrency_default = 32

    def __init__(
        self, *, job: str, to_request: Callable[[Row], RunRequest], **options: Unpack[ActorOptions]
    ) -> None:
        super().__init__(job=job, **options)
        if not callable(to_request):
            raise _fail("to_request", "must be a function of a row that returns a RunRequest")
        self._to_request = to_request

    async def _row(self, gateway: Gateway, row: Row) -> Values:
        width = len(RUN_COLUMNS)
        if row.get("upload_error_type") is not None:
            reason = f"not run: its upload failed ({row['upload_error_type']})"
            return (None, "error", None, None, NotAttemptedError.__name__, reason)
        try:
            request = self._request(row)
            run = await gateway.runs.send(request)
        except self._dooming:
            raise
        except GatewayError as exc:
            return (None, "error", *_error(exc, width - 2))
        return _run_values(run)

    def _request(self, row: Row) -> RunRequest:
        request = self._to_request(row)
        if not isinstance(request, RunRequest):
            raise _fail("to_request", f"returned {type(request).__name__}, not a RunRequest")
        if request.idempotency_key is not None:
            return request
        return attrs.evolve(request, idempotency_key=self._key(row, "run", request.to_body))


def _run_values(run: Run) -> Values:
    error_type = run.error.code if run.error is not None else None
    message = run.error.message if run.error is not None else None
    output = json.dumps(run.output, separators=(",", ":"))
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
    _dooming = _UPLOAD_DOOMING
    _concurrency_default = 8

    def __init__(
        self, *, job: str, path_column: str = "path", **options: Unpack[ActorOptions]
    ) -> None:
        super().__init__(job=job, **options)
        self._path_column = _check_column(path_column, "path_column")

    async def _row(self, gateway: Gateway, row: Row) -> Values:
        if self._path_column not in row:
            raise _fail("path_column", f"the dataset has no column {self._path_column!r}")
        path = row[self._path_column]
        try:
            identity = await asyncio.to_thread(_file_identity, path)
            key = self._key(row, "upload", lambda: identity)
            ref = await gateway.media.upload(path, idempotency_key=key)
        except self._dooming:
            raise
        except GatewayError as exc:
            return _error(exc, len(UPLOAD_COLUMNS))
        return _upload_values(ref)


def _file_identity(path: Any) -> list[object]:
    """A file's path, size and mtime: a changed file is a new upload, the same one is not.
    An unreadable path keeps just its name; the upload then fails with a typed error."""
    try:
        stat = os.stat(path)
    except (OSError, TypeError, ValueError):
        return [str(path)]
    return [str(path), stat.st_size, stat.st_mtime_ns]


def _upload_values(ref: MediaRef) -> Values:
    return (ref.media_ref, ref.size, ref.sha256, None, None)


# -- the helpers ---------------------------------------------------------------------------


def _map(
    ds: ray.data.Dataset,
    udf: type[_GatewayActor],
    *,
    actors: int,
    batch_size: int,
    num_cpus: float,
    kwargs: dict[str, Any],
) -> ray.data.Dataset:
    """Validate, then add the map stage (nothing runs until the dataset is consumed)."""
    actors = _positive_int(actors, "actors")
    batch_size = _positive_int(batch_size, "batch_size")
    num_cpus = _positive_number(num_cpus, "num_cpus")
    udf(**kwargs)  # refuse bad arguments now, on the driver, not in every actor
    if not isinstance(ds, ray.data.Dataset):
        raise _fail("ds", f"must be a ray.data.Dataset, not {type(ds).__name__}")
    return ds.map_batches(
        udf,
        fn_constructor_kwargs=kwargs,
        compute=ActorPoolStrategy(size=actors),
        num_cpus=num_cpus,
        batch_size=batch_size,
        batch_format="pyarrow",
        # One output row per input row: lets Ray push a later limit() ahead of the calls.
        udf_modifying_row_count=False,
    )


def map_runs(
    ds: ray.data.Dataset,
    *,
    job: str,
    to_request: Callable[[Row], RunRequest],
    actors: int = 4,
    batch_size: int = 256,
    num_cpus: float = DEFAULT_NUM_CPUS,
    **options: Unpack[ActorOptions],
) -> ray.data.Dataset:
    """Run ``to_request(row)`` for every row on a pool of ``actors`` and add the run columns
    (``run_id``, ``run_status``, ``run_output``, ``run_credits``, ``run_error_type``,
    ``run_error``). Rows whose upload failed are not run. Each run's key comes from
    ``job`` and ``key_column`` (else the request body), so a rerun of the job replays.
    ``options``: ``key_column``, ``concurrency`` (32 per actor), ``api_key``, ``base_url``,
    ``gateway_kwargs``.
    """
    kwargs = {"job": job, "to_request": to_request, **options}
    return _map(
        ds, GatewayRunner, actors=actors, batch_size=batch_size, num_cpus=num_cpus, kwargs=kwargs
    )


def map_uploads(
    ds: ray.data.Dataset,
    *,
    job: str,
    path_column: str = "path",
    actors: int = 4,
    batch_size: int = 64,
    num_cpus: float = DEFAULT_NUM_CPUS,
    **options: Unpack[ActorOptions],
) -> ray.data.Dataset:
    """Upload the file named in ``path_column`` of every row and add ``media_ref``,
    ``media_size``, ``media_sha256``, ``upload_error_type`` and ``upload_error``. Each
    upload's key comes from ``job`` and ``key_column`` (else the path, size and mtime).
    ``options``: ``key_column``, ``concurrency`` (8 per actor), ``api_key``, ``base_url``,
    ``gateway_kwargs``.
    """
    kwargs = {"job": job, "path_column": path_column, **options}
    return _map(
        ds, GatewayUploader, actors=actors, batch_size=batch_size, num_cpus=num_cpus, kwargs=kwargs
    )

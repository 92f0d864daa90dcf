"""``gw.media``: stream files, bytes, file objects or async iterables to the Gateway."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterable

from .._batch import check_many, run_batch
from .._config import NOT_GIVEN, NotGiven, Timeouts, call_timeouts
from .._errors import (
    APITimeoutError,
    AuthenticationError,
    GatewayError,
    InsufficientFundsError,
    InvalidRequestError,
    PermissionDeniedError,
)
from .._identity import check_job
from .._telemetry import Attributes, Observers
from .._transport import Transport
from .._upload.engine import ProgressCallback, upload_source
from .._upload.multipart import check_part_concurrency
from .._upload.resume import JournalArg, ResumeJournal
from .._upload.sources import SourceLike, prepare_source
from .._upload.storage import Storage
from .._validate import check_idempotency_key
from ..models import MediaRef
from ._base import CallTimeout, Resource, traced

__all__ = ["Media"]

# A key refused for uploads is refused for every file, unlike a model-specific 403 on runs.
_DOOMING = (AuthenticationError, InsufficientFundsError, PermissionDeniedError)


def _progress(on_progress: object, observers: Observers) -> ProgressCallback | None:
    """The callback, called through the observers' boundary: what it raises (CancelledError
    too) is logged once, counted as ``"on_progress"``, and never changes the upload's
    outcome. It is first called after the PUT: a wrong one is refused before the init."""
    if on_progress is None:
        return None
    if not callable(on_progress):
        raise InvalidRequestError(
            f"on_progress: expected callable(UploadProgress) or None, got "
            f"{type(on_progress).__name__}",
            field="on_progress",
        )
    return functools.partial(observers.call, "on_progress", on_progress)


def _check_identity(job: str | None, idempotency_key: str | None, checksum: bool) -> None:
    """A key stands for one content only if the content is hashed: refuse what would let
    one key name two contents (a later upload of other bytes under it would get the first
    upload's media_ref back), before any request."""
    if job is not None:
        check_job(job)
        if idempotency_key is not None:
            raise InvalidRequestError(
                "pass job= (keys derived from the content) or idempotency_key=, not both",
                field="idempotency_key",
            )
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)
    if not checksum and (job is not None or idempotency_key is not None):
        raise InvalidRequestError(
            "checksum: an upload named by a job or an idempotency_key must be hashed, or one "
            "key could name two contents; drop checksum=False",
            field="checksum",
        )


def _total(timeout: CallTimeout | NotGiven) -> float | None:
    """The bound on a whole upload: only an explicit ``timeout=`` sets one (validated like
    every timeout); by default the PUT has the stall watchdog instead."""
    if isinstance(timeout, NotGiven) or timeout is None:
        return None
    return call_timeouts(Timeouts(), timeout).total


def _uploaded(media: MediaRef) -> Attributes:
    """An upload's span attributes (and the uploaded-bytes metric)."""
    return {"gateway.upload.bytes": media.size, "gateway.media_ref": media.media_ref}


class Media(Resource):
    """Upload media; the resulting MediaRef goes straight into run inputs."""

    __slots__ = ("_observers", "_storage")

    def __init__(self, transport: Transport, storage: Storage, observers: Observers) -> None:
        super().__init__(transport)
        self._storage = storage
        self._observers = observers

    async def upload(
        self,
        source: SourceLike,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        size: int | None = None,
        checksum: bool = True,
        on_progress: ProgressCallback | None = None,
        timeout: CallTimeout | NotGiven = NOT_GIVEN,
        idempotency_key: str | None = None,
        part_concurrency: int | None = None,
        journal: JournalArg | None = None,
        job: str | None = None,
    ) -> MediaRef:
        """Upload one source: a path, bytes, a seekable binary file, or an async iterable
        of bytes with ``size=``. Bad input raises InvalidRequestError before any request.

        By default the PUT has no total bound (multi-GB files take what they take) but fails
        when it stalls. An explicit ``timeout`` bounds the whole upload (init, every PUT
        attempt and complete): past it, ``APITimeoutError``.
        ``idempotency_key`` (1-255 printable ASCII) makes the upload repeatable: ``init``
        and ``complete`` send keys derived from it, so calling again with the same key and
        the same bytes (a retried job) returns the same ``media_ref`` instead of uploading
        a second object, as long as the first ``upload_id`` has not expired. When the
        server splits a large file into parts, ``part_concurrency`` of them go at once
        (within the client's PUT bound; default 8 parts of a file or bytes, each streamed
        from its offset, and 4 of an async iterable, whose parts are held in memory); with
        ``journal`` (an SQLite file's path) a path source's multipart upload resumes after
        a crash, sending only the missing parts.
        ``job`` names the upload by its content instead: the source is hashed first, and
        every process that uploads the same bytes in that job sends the same keys; a server
        that already holds the content (contract version 3) answers without any byte sent.
        An idempotency key needs ``checksum=True`` (it must name one content).
        """
        _check_identity(job, idempotency_key, checksum)
        check_part_concurrency(part_concurrency)
        on_progress = _progress(on_progress, self._observers)
        resume = None if journal is None else ResumeJournal.at(journal)
        async with resume or contextlib.nullcontext():
            return await self._upload(
                source,
                checksum=checksum,
                on_progress=on_progress,
                timeout=timeout,
                filename=filename,
                content_type=content_type,
                size=size,
                idempotency_key=idempotency_key,
                part_concurrency=part_concurrency,
                journal=resume,
                job=job,
            )

    @traced("gateway.media.upload_many")
    async def upload_many(
        self,
        sources: Iterable[SourceLike],
        *,
        concurrency: int = 8,
        checksum: bool = True,
        on_progress: ProgressCallback | None = None,
        part_concurrency: int | None = None,
        timeout: CallTimeout | NotGiven = NOT_GIVEN,
        job: str | None = None,
    ) -> list[MediaRef | GatewayError]:
        """Upload many sources, at most ``concurrency`` at once; results in input order.

        Each result is a MediaRef or the GatewayError of that source; one bad file never
        stops the others, but 401/402/403 stop new uploads (the rest: NotAttemptedError).
        ``sources`` is consumed lazily, so memory does not grow with its length.
        ``part_concurrency`` bounds the parts in flight per file (see ``upload``). An
        explicit ``timeout`` bounds each file's whole upload (see ``upload``). With ``job``
        each file is named by its content (see ``upload``): rerunning the job anywhere sends
        no bytes the workspace already holds.
        """
        check_many(sources, "sources", "gw.media.upload() for one")
        _check_identity(job, None, checksum)
        check_part_concurrency(part_concurrency)
        on_progress = _progress(on_progress, self._observers)

        async def one(index: int, source: SourceLike) -> MediaRef:
            return await self._upload(
                source,
                checksum=checksum,
                on_progress=on_progress,
                timeout=timeout,
                index=index,
                part_concurrency=part_concurrency,
                job=job,
            )

        return await run_batch(sources, one, concurrency=concurrency, dooming=_DOOMING)

    @traced("gateway.media.upload", outcome=_uploaded)
    async def _upload(
        self,
        source: SourceLike,
        *,
        checksum: bool,
        on_progress: ProgressCallback | None,
        timeout: CallTimeout | NotGiven,
        index: int | None = None,
        filename: str | None = None,
        content_type: str | None = None,
        size: int | None = None,
        idempotency_key: str | None = None,
        part_concurrency: int | None = None,
        journal: ResumeJournal | None = None,
        job: str | None = None,
    ) -> MediaRef:
        total = _total(timeout)  # checked first: a bad timeout sends nothing
        bound = asyncio.timeout(total)  # None: no bound
        try:
            async with bound, self._storage.holding():
                prepared = await prepare_source(
                    source,
                    filename=filename,
                    content_type=content_type,
                    size=size,
                    files=self._storage.files,
                )
                if checksum:
                    prepared.start_sha256(self._storage.files)
                return await upload_source(
                    self._transport,
                    self._storage,
                    prepared,
                    checksum=checksum,
                    on_progress=on_progress,
                    index=index,
                    timeout=timeout,
                    idempotency_key=idempotency_key,
                    part_concurrency=part_concurrency,
                    journal=journal,
                    job=job,
                )
        except TimeoutError:
            if not bound.expired():
                raise
        raise APITimeoutError(f"upload did not finish within timeout={total:g} s")

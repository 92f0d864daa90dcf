"""One upload from start to end: ``init`` → ``PUT`` → ``complete``, with the retries that
never corrupt or duplicate.

- ``init`` and ``complete`` go through the core transport (idempotency keys, backoff).
- A failed PUT (reset, stall, 408, 429, 5xx, S3's ``400 RequestTimeout``) is sent again from
  byte 0 with a fresh hash, within the client's retry policy, for sources that can be read
  again; an async iterable cannot, and its error says so.
- Storage refusing the pre-signed URL (403, 410), or ``complete`` answering 410, gets one
  fresh ``init``.
- ``complete`` runs once per successful PUT; a source that changed mid-stream never
  reaches it.
- With the caller's ``idempotency_key`` every ``init`` (the first and each re-init) and
  every ``complete`` sends a key derived from it, so an upload repeated by a retried job
  (a Ray task, a restarted worker) replays the same ``upload_id`` and ``media_ref``
  instead of creating a second upload. Without one, each call gets a fresh random key.
- An init answered with ``parts`` (contract version 2) hands over to ``multipart.py``.
- With a ``job`` the upload is named by its content: the source is hashed before ``init``
  (from the very bytes sent when it is read whole, else with one extra read that the PUT's
  own hash must match), ``init`` declares that sha256, and every key derives from
  ``idempotency_key(job, ...)`` of it. A version-3 server that already holds the content
  answers ``200`` with the finished upload (nothing is sent); a replayed ``init`` names the
  first upload, which, once completed, ``complete`` replays without sending bytes again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from .. import _identity
from .._convert import structure
from .._errors import NotFoundError, UploadError, UploadExpiredError, detached
from .._transport import Transport
from ..models import MediaRef, UploadTicket
from .multipart import Multipart, upload_status
from .parts import MultipartTicket, structure_ticket
from .resume import ResumeJournal
from .sources import Source
from .storage import PutOutcome, Storage, TicketRefused

__all__ = ["UploadProgress", "upload_source"]


@attrs.frozen(kw_only=True)
class UploadProgress:
    """Bytes sent so far for one file (``index`` is its position in ``upload_many``)."""

    filename: str
    bytes_sent: int
    total: int
    index: int | None = None


ProgressCallback = Callable[[UploadProgress], Any]


def _derived_key(key: str | None, purpose: str) -> str | None:
    """The key of one call of an upload, through the one key function: distinct per call
    (init, each re-init, complete per upload_id) since the Gateway answers 409 to one key
    sent with two different bodies."""
    if key is None:
        return None
    return _identity.idempotency_key(key, purpose)


class ContentHeld(Exception):
    """Internal: ``init`` answered that the workspace already holds this content (v3)."""

    def __init__(self, media: MediaRef) -> None:
        super().__init__(media.media_ref)
        self.media = media


async def _init(
    transport: Transport,
    source: Source,
    timeout: Any,
    idempotency_key: str | None,
    sha256: str | None,
) -> tuple[UploadTicket | MultipartTicket, bool]:
    """A ticket, and whether it is the replay of a first ``init`` under this key."""
    body: dict[str, Any] = {
        "filename": source.filename,
        "content_type": source.content_type,
        "size": source.size,
    }
    if sha256 is not None:
        body["sha256"] = sha256
    reply = await transport.request(
        "POST",
        "/api/media/upload/init",
        body=body,
        idempotency_key=idempotency_key,
        timeout=timeout,
    )
    if reply.status == 200 and isinstance(reply.data, dict) and "media_ref" in reply.data:
        raise ContentHeld(structure(reply.data, MediaRef, request_id=reply.request_id))
    return structure_ticket(reply.data, reply.request_id), reply.replayed


async def _complete(
    transport: Transport,
    ticket: UploadTicket,
    digest: str | None,
    timeout: Any,
    idempotency_key: str | None,
) -> MediaRef:
    body: dict[str, Any] = {"upload_id": ticket.upload_id}
    if digest is not None:
        body["sha256"] = digest
    reply = await transport.request(
        "POST",
        "/api/media/upload/complete",
        body=body,
        idempotency_key=_derived_key(idempotency_key, f"complete {ticket.upload_id}"),
        timeout=timeout,
    )
    return structure(reply.data, MediaRef, request_id=reply.request_id)


class _Upload:
    """The state of one upload across its attempts."""

    def __init__(
        self,
        transport: Transport,
        storage: Storage,
        source: Source,
        *,
        checksum: bool,
        on_progress: ProgressCallback | None,
        index: int | None,
        timeout: Any,
        idempotency_key: str | None,
        part_concurrency: int | None,
        journal: ResumeJournal | None,
        job: str | None,
    ) -> None:
        self.transport, self.storage, self.source = transport, storage, source
        self.checksum, self.timeout = checksum, timeout
        self.on_progress, self.index = on_progress, index
        self.part_concurrency, self.journal = part_concurrency, journal
        self.reinit_left = 1
        self.key, self.inits, self.job = idempotency_key, 0, job
        self.sha256: str | None = None  # known before init with a job: declared, then checked
        self.replayed = False  # the last init replayed a first answer under its key

    async def init(self) -> UploadTicket | MultipartTicket:
        """``POST /api/media/upload/init``: one URL or, above the server's limit, parts
        (``ContentHeld`` when the workspace already holds the declared content)."""
        key = _derived_key(self.key, f"init {self.inits}")
        self.inits += 1
        ticket, self.replayed = await _init(
            self.transport, self.source, self.timeout, key, self.sha256
        )
        return ticket

    async def _identify(self, job: str) -> None:
        """Name the upload by its content: hash it, and derive its key from the job, the
        content and the exact ``init`` body (a key covers one body: the name and type too)."""
        source = self.source
        self.sha256 = await source.content_sha256()
        material = {
            "upload": {"sha256": self.sha256, "size": source.size},
            "init": {"filename": source.filename, "content_type": source.content_type},
        }
        self.key = _identity.idempotency_key(job, material)

    def _check_sent(self, digest: str | None) -> None:
        """The PUT sent the content the identity was made of, or the upload fails here."""
        if self.sha256 is not None and digest is not None and digest != self.sha256:
            raise UploadError(
                f"{self.source.identity}: the content changed while it was read (sha256 "
                f"{self.sha256[:12]}... before the upload, {digest[:12]}... as sent); the "
                "upload was not completed"
            )

    def derived_key(self, purpose: str) -> str | None:
        """The key of one call of this upload (None without the caller's key)."""
        return _derived_key(self.key, purpose)

    async def _new_ticket(self) -> UploadTicket:
        ticket = await self.init()
        if isinstance(ticket, MultipartTicket):
            raise UploadError(
                f"{self.source.identity}: the server switched from a single upload URL to "
                "multipart mid-upload; upload the file again"
            )
        return ticket

    def progress(self, sent: int) -> None:
        if self.on_progress is not None:
            self.on_progress(
                UploadProgress(
                    filename=self.source.filename,
                    bytes_sent=sent,
                    total=self.source.size,
                    index=self.index,
                )
            )

    async def run(self) -> MediaRef:
        if self.job is not None:
            await self._identify(self.job)
        try:
            return await self._run()
        except ContentHeld as held:  # version 3: nothing to send
            return held.media

    async def _run(self) -> MediaRef:
        multipart = Multipart(self)
        resumed = await multipart.resume()
        if resumed is not None:
            return resumed
        first = await self.init()
        if isinstance(first, MultipartTicket):
            return await multipart.upload(first)
        ticket = first
        if self.replayed and self.sha256 is not None:
            done = await self._completed_before(ticket)
            if done is not None:
                return done
        while True:
            ticket, digest = await self._put_until_stored(ticket)
            self._check_sent(digest)
            try:
                return await _complete(self.transport, ticket, digest, self.timeout, self.key)
            except UploadExpiredError:
                ticket = await self._reinit(UploadExpiredError)

    async def _completed_before(self, ticket: UploadTicket) -> MediaRef | None:
        """A replayed ``init`` names the first upload under this key, which may have been
        completed since (by another process, on another machine): then ``complete`` under
        its derived key replays the ``media_ref``, and no byte is sent again. None when it
        is still pending, or the server has no status listing (version 1)."""
        try:
            status = await upload_status(self.transport, ticket.upload_id, self.timeout)
        except NotFoundError:
            return None
        if status.status != "completed":
            return None
        return await _complete(self.transport, ticket, self.sha256, self.timeout, self.key)

    async def _reinit(self, cause: type[Exception] | int) -> UploadTicket:
        if self.reinit_left == 0:
            raise UploadError(
                f"{self.source.identity}: the upload expired or was refused again after a "
                f"fresh init ({cause}); giving up"
            )
        self.reinit_left -= 1
        return await self._new_ticket()

    async def _put_until_stored(self, ticket: UploadTicket) -> tuple[UploadTicket, str | None]:
        retry = 0
        while True:
            try:
                stored = await self.storage.put(
                    ticket,
                    self.source,
                    checksum=self.checksum,
                    on_write=self.progress,
                    resend=retry,
                )
                return ticket, stored.digest
            except TicketRefused as refused:
                ticket = await self._reinit(refused.status)
                continue
            except PutOutcome as failed:
                delay = self.transport.retry.delay(retry, failed.retry_after)
                error = failed.error
            if delay is None:
                raise detached(error)  # outside the except: no chain to the PUT's failure
            retry += 1
            if self.transport.telemetry is not None:
                self.transport.telemetry.retried(error, delay)
            await self.transport.sleep(delay)


async def upload_source(
    transport: Transport,
    storage: Storage,
    source: Source,
    *,
    checksum: bool,
    on_progress: ProgressCallback | None,
    index: int | None = None,
    timeout: Any,
    idempotency_key: str | None = None,
    part_concurrency: int | None = None,
    journal: ResumeJournal | None = None,
    job: str | None = None,
) -> MediaRef:
    """Upload one prepared source and return its MediaRef (named by its content with a
    ``job``: see the module's docstring)."""
    upload = _Upload(
        transport,
        storage,
        source,
        checksum=checksum,
        on_progress=on_progress,
        index=index,
        timeout=timeout,
        idempotency_key=idempotency_key,
        part_concurrency=part_concurrency,
        journal=journal,
        job=job,
    )
    return await upload.run()

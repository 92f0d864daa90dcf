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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from .._convert import structure
from .._errors import UploadError, UploadExpiredError
from .._transport import Transport
from ..models import MediaRef, UploadTicket
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


async def _init(transport: Transport, source: Source, timeout: Any) -> UploadTicket:
    body = {"filename": source.filename, "content_type": source.content_type, "size": source.size}
    reply = await transport.request("POST", "/api/media/upload/init", body=body, timeout=timeout)
    return structure(reply.data, UploadTicket, request_id=reply.request_id)


async def _complete(
    transport: Transport, ticket: UploadTicket, digest: str | None, timeout: Any
) -> MediaRef:
    body: dict[str, Any] = {"upload_id": ticket.upload_id}
    if digest is not None:
        body["sha256"] = digest
    reply = await transport.request(
        "POST", "/api/media/upload/complete", body=body, timeout=timeout
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
    ) -> None:
        self.transport, self.storage, self.source = transport, storage, source
        self.checksum, self.timeout = checksum, timeout
        self.on_progress, self.index = on_progress, index
        self.reinit_left = 1

    def _progress(self, sent: int) -> None:
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
        ticket = await _init(self.transport, self.source, self.timeout)
        while True:
            ticket, digest = await self._put_until_stored(ticket)
            try:
                return await _complete(self.transport, ticket, digest, self.timeout)
            except UploadExpiredError:
                ticket = await self._reinit(UploadExpiredError)

    async def _reinit(self, cause: type[Exception] | int) -> UploadTicket:
        if self.reinit_left == 0:
            raise UploadError(
                f"{self.source.identity}: the upload expired or was refused again after a "
                f"fresh init ({cause}); giving up"
            )
        self.reinit_left -= 1
        return await _init(self.transport, self.source, self.timeout)

    async def _put_until_stored(self, ticket: UploadTicket) -> tuple[UploadTicket, str | None]:
        retry = 0
        while True:
            try:
                digest = await self.storage.put(
                    ticket, self.source, checksum=self.checksum, on_write=self._progress
                )
                return ticket, digest
            except TicketRefused as refused:
                ticket = await self._reinit(refused.status)
            except PutOutcome as failed:
                delay = self.transport.retry.delay(retry, failed.retry_after)
                if delay is None:
                    raise failed.error from None
                retry += 1
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
) -> MediaRef:
    """Upload one prepared source and return its MediaRef."""
    upload = _Upload(
        transport,
        storage,
        source,
        checksum=checksum,
        on_progress=on_progress,
        index=index,
        timeout=timeout,
    )
    return await upload.run()

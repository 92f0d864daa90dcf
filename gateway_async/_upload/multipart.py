"""Multipart uploads (contract version 2): parts sent in parallel, retried one by one,
resumed after a crash.

- Parts go at most ``part_concurrency`` at once per upload (default 8, 4 for an async
  iterable), each PUT also holding one of the client-wide PUT slots; each part is streamed
  from its offset and hashed while it streams (its own read-ahead thread for files, the
  executor for bytes).
- A failed part PUT (reset, stall, 408, 429, 5xx) is sent again, that part only, within
  the client's retry policy. A part URL that storage refuses (403, 410) is re-signed through
  ``POST /api/media/upload/parts`` (twice at most per part). A part answered ``404`` means
  the upload is gone: one fresh ``init``, as does ``complete`` answering 410.
- An async iterable is read in order, one part at a time into memory (it cannot be read at
  an offset), so its parts can be retried too; memory is ``part_concurrency`` parts.
- The file is checked unchanged (size, mtime, ctime) at the end of every part and before
  ``complete``: a file that changes mid-upload never completes.
- With a journal, the ``upload_id`` is written before the first part and each part's
  sha256 and ETag once stored; a restarted process lists the stored parts, trusts those
  whose ETag and local sha256 match the journal, and sends only the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Any, Final, Protocol

import attrs

from .._convert import structure
from .._errors import (
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    UploadError,
    UploadExpiredError,
)
from .._transport import Transport, segment
from ..models import MediaRef, UploadTicket
from .parts import (
    MultipartTicket,
    Part,
    PartsRefresh,
    Reader,
    UploadStatus,
    close_quietly,
    hash_range,
    memory_reader,
    open_reader,
    part_source,
    plan,
    plan_ticket,
)
from .resume import Resumable, ResumeJournal, resume_key
from .sources import Source
from .storage import PutOutcome, Storage, TicketRefused

__all__ = [
    "PART_CONCURRENCY",
    "STREAM_PART_CONCURRENCY",
    "Multipart",
    "UploadContext",
    "check_part_concurrency",
    "parts_at_once",
    "upload_status",
]

_REFRESHES_PER_PART = 2
_FRESH_INITS = 1
# Parts at once by default. A part of a file or of bytes is streamed from its offset (a few
# 1 MiB chunks in memory): against storage that caps each connection at 100 MB/s, 8 parts
# sent 6.9x one PUT's speed and 4 parts 3.7x, and on an uncapped loopback link (CPU-bound)
# 8 parts still matched one PUT (benchmarks/RESULTS.md). A part of an async iterable is
# held whole in memory (part_size, 64 MiB on the Gateway) so that it can be resent: 4.
PART_CONCURRENCY: Final = 8
STREAM_PART_CONCURRENCY: Final = 4


class UploadContext(Protocol):
    """What a multipart upload needs from the engine's upload."""

    transport: Transport
    storage: Storage
    source: Source
    checksum: bool
    timeout: Any
    part_concurrency: int | None  # None: the default for the source's kind
    journal: ResumeJournal | None
    key: str | None  # the caller's idempotency key

    def progress(self, sent: int) -> None: ...

    async def init(self) -> UploadTicket | MultipartTicket:
        """A fresh ``init`` (with the next key derived from the caller's, if any)."""

    def derived_key(self, purpose: str) -> str | None:
        """The idempotency key of one call, derived from the caller's (None: random)."""


class _UploadGone(Exception):
    """Internal: storage answered 404 to a part: the multipart upload no longer exists."""


@attrs.frozen
class _Done:
    etag: str
    sha256: str | None


def check_part_concurrency(value: object) -> None:
    """InvalidRequestError, before any request, unless ``value`` is None or a positive int."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequestError(
            f"part_concurrency: {value!r} is not a positive integer; pass e.g. 8, or None "
            "for the default",
            field="part_concurrency",
        )


def parts_at_once(part_concurrency: int | None, source: Source) -> int:
    """The caller's ``part_concurrency``, or the default for the source's kind."""
    if part_concurrency is not None:
        return part_concurrency
    return STREAM_PART_CONCURRENCY if source.kind == "stream" else PART_CONCURRENCY


class Multipart:
    """One file's multipart upload across fresh inits and restarts."""

    def __init__(self, ctx: UploadContext) -> None:
        self.ctx = ctx
        self.key = None if ctx.journal is None else resume_key(ctx.source)

    async def resume(self) -> MediaRef | None:
        """Finish the journaled upload of this file, if the server still has it."""
        journal = self.ctx.journal
        if journal is None or self.key is None:
            return None
        known = await journal.find(self.key)
        if known is None:
            return None
        try:
            status = await self._status(known.upload_id)
            if status.part_size != known.part_size or status.size != known.size:
                raise _UploadGone
            reader = await open_reader(self.ctx.source)
            try:
                attempt = _Attempt(self, known.upload_id, reader)
                return await attempt.resume(known, status)
            finally:
                close_quietly(reader)
        except (NotFoundError, _UploadGone, UploadExpiredError):
            await journal.forget(self.key)  # the server lost it: start afresh
            return None

    async def upload(self, ticket: MultipartTicket) -> MediaRef:
        """Send every part of a fresh ticket and complete; one fresh init if it is gone."""
        if self.ctx.key is not None:  # init may be a replay of an upload already completed
            again = await self._completed_before(ticket)
            if again is not None:
                return again
        inits_left = _FRESH_INITS
        while True:
            if self.ctx.journal is not None and self.key is not None:
                await self.ctx.journal.begin(self.key, self.ctx.source.size, ticket)
            reader = await open_reader(self.ctx.source)
            try:
                attempt = _Attempt(self, ticket.upload_id, reader)
                return await attempt.run(ticket)
            except (_UploadGone, UploadExpiredError) as exc:
                if inits_left == 0:
                    raise UploadError(
                        f"{self.ctx.source.identity}: the multipart upload expired or vanished "
                        f"again after a fresh init ({type(exc).__name__}); giving up"
                    ) from None
                inits_left -= 1
            finally:
                close_quietly(reader)
            ticket = await self._fresh_ticket()

    async def _completed_before(self, ticket: MultipartTicket) -> MediaRef | None:
        """The MediaRef of an upload this idempotency key already completed: ``complete``
        again with the same parts and sha256s (hashed from the source, in threads), which
        the Gateway answers as a replay. None when it is not completed (or the source is a
        stream, which cannot be read twice)."""
        status = await self._status(ticket.upload_id)
        reader = await open_reader(self.ctx.source) or memory_reader(self.ctx.source)
        if status.status != "completed" or reader is None:
            close_quietly(reader)
            return None
        try:
            attempt = _Attempt(self, ticket.upload_id, reader)
            parts = plan_ticket(self.ctx.source.size, ticket)
            await attempt.rehash(parts, status)
            return await attempt.complete(parts)
        finally:
            close_quietly(reader)

    async def _fresh_ticket(self) -> MultipartTicket:
        ticket = await self.ctx.init()
        if not isinstance(ticket, MultipartTicket):
            raise UploadError(
                f"{self.ctx.source.identity}: the server switched from multipart to a single "
                "upload URL mid-upload; upload the file again"
            )
        return ticket

    async def _status(self, upload_id: str) -> UploadStatus:
        return await upload_status(self.ctx.transport, upload_id, self.ctx.timeout)


async def upload_status(transport: Transport, upload_id: str, timeout: Any) -> UploadStatus:
    """``GET /api/media/upload/{upload_id}``: whether it completed, and the parts held."""
    path = f"/api/media/upload/{segment(upload_id, field='upload_id')}"
    reply = await transport.request("GET", path, timeout=timeout)
    return structure(reply.data, UploadStatus, request_id=reply.request_id)


class _Attempt:
    """One multipart upload id: its parts in flight, their results, its progress."""

    def __init__(self, owner: Multipart, upload_id: str, reader: Reader | None) -> None:
        self.owner, self.ctx = owner, owner.ctx
        self.upload_id, self.reader = upload_id, reader
        self.urls: dict[int, str] = {}
        self.done: dict[int, _Done] = {}
        self.sent: dict[int, int] = {}  # bytes of each part's current attempt
        self.total = 0  # their sum, for progress
        self.method, self.headers = "PUT", dict[str, str]()
        self.expires_at: Any = None  # set with the URLs (from init or a refresh)

    async def run(self, ticket: MultipartTicket) -> MediaRef:
        parts = plan_ticket(self.ctx.source.size, ticket)
        self._adopt(ticket)
        return await self._finish(parts)

    async def resume(self, known: Resumable, status: UploadStatus) -> MediaRef:
        """Trust the stored parts that match the journal and the file; send the others."""
        self.method, self.headers = known.method, known.headers
        parts = plan(self.ctx.source.size, known.part_size)
        listed = {p.part_number: p for p in status.parts}
        checks = [self._held(part, listed, known) for part in parts]
        for part, ok in zip(parts, await asyncio.gather(*checks), strict=True):
            if ok is not None:
                self.done[part.number] = ok
                self.sent[part.number] = part.size
                self.total += part.size
        if status.status == "completed":  # crashed after complete: complete again, same ref
            for number, stored in listed.items():
                self.done.setdefault(number, _Done(stored.etag, None))
        missing = [p.number for p in parts if p.number not in self.done]
        if missing:
            await self._refresh(missing)
        return await self._finish(parts)

    async def _held(self, part: Part, listed: dict[int, Any], known: Resumable) -> _Done | None:
        stored, journaled = listed.get(part.number), known.parts.get(part.number)
        if stored is None or journaled is None or stored.size != part.size:
            return None
        sha256, etag = journaled
        if stored.etag != etag:
            return None
        if self.reader is None or await asyncio.to_thread(hash_range, self.reader, part) != sha256:
            return None
        return _Done(etag, sha256)

    async def rehash(self, parts: tuple[Part, ...], status: UploadStatus) -> None:
        """Each part as the first ``complete`` sent it: its listed ETag and its sha256 as
        the source holds it (hashed in threads, in parallel)."""
        etags = {p.part_number: p.etag for p in status.parts}

        async def one(part: Part) -> None:
            digest = None
            if self.ctx.checksum and self.reader is not None:
                digest = await asyncio.to_thread(hash_range, self.reader, part)
            self.done[part.number] = _Done(etags.get(part.number, ""), digest)

        await asyncio.gather(*map(one, parts))

    def _adopt(self, ticket: MultipartTicket | PartsRefresh) -> None:
        if isinstance(ticket, MultipartTicket):
            self.method, self.headers = ticket.method, ticket.headers
        self.expires_at = ticket.expires_at
        self.urls.update((p.part_number, p.upload_url) for p in ticket.parts)

    async def _finish(self, parts: tuple[Part, ...]) -> MediaRef:
        todo = [p for p in parts if p.number not in self.done]
        self._progress()
        if todo:
            await _gather_first_error(self._send_all(todo))
        if self.reader is not None:
            await asyncio.to_thread(self.reader.check)
        media = await self.complete(parts)
        if self.owner.key is not None and self.ctx.journal is not None:
            await self.ctx.journal.forget(self.owner.key)
        return media

    async def _send_all(self, todo: list[Part]) -> None:
        slots = asyncio.Semaphore(parts_at_once(self.ctx.part_concurrency, self.ctx.source))
        stream = _stream_parts(self.ctx.source, todo) if self.ctx.source.kind == "stream" else None
        async with contextlib.AsyncExitStack() as stack, asyncio.TaskGroup() as group:
            if stream is not None:
                stack.push_async_callback(stream.aclose)
            for part in todo:
                await slots.acquire()
                data = None if stream is None else await anext(stream)
                source = part_source(self.ctx.source, part, self.reader, data)
                group.create_task(self._send_released(part, source, slots))

    async def _send_released(self, part: Part, source: Source, slots: asyncio.Semaphore) -> None:
        try:
            await self._send(part, source)
        finally:
            slots.release()

    async def _send(self, part: Part, source: Source) -> None:
        retry = refreshes = 0
        while True:
            ticket = UploadTicket(
                upload_id=self.upload_id,
                upload_url=self.urls[part.number],
                method=self.method,
                headers=self.headers,
                expires_at=self.expires_at,
            )
            try:
                stored = await self.ctx.storage.put(
                    ticket,
                    source,
                    checksum=self.ctx.checksum,
                    on_write=self._writer(part),
                    resend=retry,
                )
            except TicketRefused as refused:
                if refreshes == _REFRESHES_PER_PART:
                    raise UploadError(
                        f"{self.ctx.source.identity}: storage refused part {part.number} "
                        f"(HTTP {refused.status}) again after fresh URLs; giving up",
                        status_code=refused.status,
                    ) from None
                refreshes += 1
                await self._refresh([part.number])
                continue
            except PutOutcome as failed:
                delay = self.ctx.transport.retry.delay(retry, failed.retry_after)
                if delay is None:
                    raise failed.error from None
                retry += 1
                if self.ctx.transport.telemetry is not None:
                    self.ctx.transport.telemetry.retried(failed.error, delay)
                await self.ctx.transport.sleep(delay)
                continue
            except UploadError as exc:
                if exc.status_code == 404:
                    raise _UploadGone from exc
                raise
            await self._stored(part, stored.digest, stored.etag)
            return

    async def _stored(self, part: Part, digest: str | None, etag: str | None) -> None:
        if etag is None:
            raise UploadError(
                f"{self.ctx.source.identity}: storage accepted part {part.number} without the "
                "ETag header that complete needs; the upload was not completed"
            )
        self.done[part.number] = _Done(etag, digest)
        journal = self.ctx.journal
        if journal is not None and self.owner.key is not None and digest is not None:
            await journal.part_stored(self.upload_id, part.number, digest, etag)

    def _writer(self, part: Part) -> Callable[[int], None]:
        def wrote(sent: int) -> None:
            self.total += sent - self.sent.get(part.number, 0)
            self.sent[part.number] = sent
            self._progress()

        return wrote

    def _progress(self) -> None:
        self.ctx.progress(self.total)

    async def _refresh(self, numbers: list[int]) -> None:
        body = {"upload_id": self.upload_id, "part_numbers": numbers}
        reply = await self.ctx.transport.request(
            "POST", "/api/media/upload/parts", body=body, timeout=self.ctx.timeout
        )
        self._adopt(structure(reply.data, PartsRefresh, request_id=reply.request_id))

    async def complete(self, parts: tuple[Part, ...]) -> MediaRef:
        listed = []
        for part in parts:
            done = self.done[part.number]
            item: dict[str, Any] = {"part_number": part.number, "etag": done.etag}
            if done.sha256 is not None:
                item["sha256"] = done.sha256
            listed.append(item)
        reply = await self.ctx.transport.request(
            "POST",
            "/api/media/upload/complete",
            body={"upload_id": self.upload_id, "parts": listed},
            idempotency_key=self.ctx.derived_key(f"complete {self.upload_id}"),
            timeout=self.ctx.timeout,
        )
        return structure(reply.data, MediaRef, request_id=reply.request_id)


async def _stream_parts(source: Source, parts: list[Part]) -> AsyncGenerator[bytes, None]:
    """An async iterable source cut into its parts' bytes, in order (exact sizes). Before
    the last part is handed out, the source must be at its end."""
    buffer = bytearray()
    async with contextlib.aclosing(source.chunks()) as chunks:
        for part in parts:
            while len(buffer) < part.size:
                chunk = await anext(chunks, None)
                if chunk is None:
                    raise _miscount(source, "fewer")
                buffer += chunk
            data = bytes(buffer[: part.size])
            del buffer[: part.size]
            if part is parts[-1] and (buffer or await anext(chunks, None) is not None):
                raise _miscount(source, "more")
            yield data


def _miscount(source: Source, which: str) -> UploadError:
    return UploadError(
        f"{source.identity}: the source gave {which} bytes than its declared size "
        f"{source.size}; the upload was not completed"
    )


async def _gather_first_error(work: Any) -> None:
    """Await ``work`` (a TaskGroup body); raise its first error itself, not in a group."""
    try:
        await work
    except BaseExceptionGroup as group:
        first = _first(group)
        raise first from None


def _first(group: BaseExceptionGroup[Any]) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first(exc)
        if isinstance(exc, GatewayError | _UploadGone | UploadExpiredError):
            return exc
    return group.exceptions[0]

"""The storage side of an upload: its own aiohttp session and the PUT to a pre-signed URL.

The storage session shares nothing with the API session: no default headers, no cookie jar,
no redirects, so the Gateway's ``X-API-Key`` or ``Authorization`` can never reach a storage
host (aiohttp strips only Authorization and cookies on cross-origin redirects, not custom
headers). It has no total timeout either (aiohttp's default 300 s would kill every upload
longer than five minutes); a stall watchdog, no byte moved for ``stall_timeout`` seconds
(see ``_StallGuard``), takes its place. Nothing here quotes the pre-signed URL: its query
is the credential, so aiohttp's messages and storage's error bodies are redacted.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Mapping
from typing import Final

import aiohttp
import attrs
from aiohttp import payload
from aiohttp.abc import AbstractStreamWriter
from yarl import URL

from .._deadline import DeadlineWatch
from .._errors import GatewayError, UploadError, detached
from .._retry import parse_retry_after
from .._telemetry import Telemetry
from .._transport import describe_foreign, redact
from ..models import UploadTicket
from .files import LocalFiles
from .payload import StreamingBody
from .sources import Source

__all__ = ["PutOutcome", "Storage", "Stored", "TicketRefused"]

_RETRY_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
_REFUSED_STATUSES: Final = frozenset({403, 410})  # signature expired or refused: init again
_MAX_ERROR_BODY: Final = 4096
_NO_TYPE: Final = ("Content-Type",)  # when init names no type, send none (it may be signed)
_SIOCOUTQ: int | None = None  # TIOCOUTQ on Linux; elsewhere the kernel's queue is not counted
# Once the whole body is written, how often the stall guard looks whether the kernel's
# queue has drained, so the wait for the answer starts when delivery ends.
_DRAIN_CHECK: Final = 0.05
if sys.platform == "linux":
    import fcntl
    import termios

    _SIOCOUTQ = termios.TIOCOUTQ


class TicketRefused(Exception):
    """Internal: storage refused the pre-signed URL (403/410); a fresh init may help."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class PutOutcome(Exception):
    """Internal: a PUT attempt that failed in a way worth retrying, with the server's wait."""

    def __init__(self, error: UploadError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class _Bytes(payload.BytesPayload):
    """A whole body in one write, remembering aiohttp's writer for the stall guard."""

    writer: AbstractStreamWriter | None = None
    written = False  # every byte handed to aiohttp's writer
    on_written: Callable[[], None] | None = None  # the stall guard's, told at once

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        self.writer, self.written = writer, False
        await super().write_with_length(writer, content_length)
        self.written = True
        if self.on_written is not None:
            self.on_written()


def _kernel_queue(transport: asyncio.Transport) -> int:
    """Bytes the kernel still holds for the peer (Linux's SIOCOUTQ); 0 where unknown."""
    sock = transport.get_extra_info("socket")
    if _SIOCOUTQ is None or sock is None:
        return 0
    try:
        queued = fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return int.from_bytes(queued, sys.byteorder, signed=True)


def _delivered(writer: AbstractStreamWriter | None) -> int:
    """Bytes of the request that left this host: written, minus what is still queued.

    A 1 MiB write returns once it is queued; counting what the queues still hold shows a
    slow link moving, and a peer that stopped reading standing still.
    """
    transport: asyncio.Transport | None = getattr(writer, "transport", None)
    if writer is None or transport is None:
        return 0
    written = int(getattr(writer, "output_size", 0))
    return written - transport.get_write_buffer_size() - _kernel_queue(transport)


def _all_delivered(body: _Bytes | StreamingBody) -> bool:
    """Every byte of the body written, and none left in this host's queues."""
    transport: asyncio.Transport | None = getattr(body.writer, "transport", None)
    if not body.written or transport is None:
        return False
    return transport.get_write_buffer_size() == 0 and _kernel_queue(transport) == 0


class _StallGuard:
    """Stalled means no byte moved for ``timeout`` seconds, not "a chunk took that long".

    The client's DeadlineWatch cancels the PUT at ``timeout`` after the last progress seen;
    a check every quarter of ``timeout`` pushes that deadline back whenever bytes moved.
    Once the whole body is delivered (written, and out of the kernel's send queue) nothing
    more can move: the last bytes may sit acknowledged in a slow reader's buffer for long,
    so from then on the wait for the answer is bounded by ``answer`` (the attempt timeout),
    not by the stall timeout. The body tells the guard when its last byte is written, and
    the guard then looks every _DRAIN_CHECK seconds until the kernel's queue is empty: at a
    quarter of a 60 s stall timeout, the wait for the answer would start up to 15 s late.
    """

    def __init__(
        self,
        watch: DeadlineWatch,
        task: asyncio.Task[object],
        timeout: float,
        body: _Bytes | StreamingBody,
        answer: float | None,
    ) -> None:
        self._watch, self._task, self._timeout, self._body = watch, task, timeout, body
        self._answer = answer
        self._loop = asyncio.get_running_loop()
        self._seen = -1
        self._handle: asyncio.TimerHandle | None = None
        self._stopped = False
        self.delivered = False
        body.on_written = self._written
        self._check()

    def _written(self) -> None:
        if not self._stopped and not self.delivered:
            if self._handle is not None:
                self._handle.cancel()
            self._check()

    def _check(self) -> None:
        if _all_delivered(self._body):
            self.delivered, self._handle = True, None
            if self._answer is None:
                self._watch.release(self._task)
            else:
                self._watch.watch(self._task, self._loop.time() + self._answer)
            return
        moved = _delivered(self._body.writer)
        if moved != self._seen:
            self._seen = moved
            self._watch.watch(self._task, self._loop.time() + self._timeout)
        every = min(_DRAIN_CHECK, self._timeout / 4) if self._body.written else self._timeout / 4
        self._handle = self._loop.call_later(every, self._check)

    def stop(self) -> None:
        self._stopped, self._body.on_written = True, None
        if self._handle is not None:
            self._handle.cancel()
        self._watch.release(self._task)


@attrs.frozen
class Stored:
    """A PUT that storage accepted: the body's sha256 (when asked) and storage's ETag
    (exactly as sent, quotes included; multipart ``complete`` needs it back)."""

    digest: str | None
    etag: str | None


class Storage:
    """Owns the storage session and the client-wide bound on concurrent PUTs."""

    def __init__(
        self,
        *,
        max_concurrent: int,
        connect_timeout: float | None,
        stall_timeout: float,
        deadlines: Callable[[], DeadlineWatch],
        answer_timeout: float | None = None,
    ) -> None:
        self._max_concurrent = max_concurrent
        self.answer_timeout = answer_timeout  # the wait for storage's answer once all is sent
        self._connect_timeout = connect_timeout
        self.stall_timeout = stall_timeout
        self._deadlines = deadlines
        self.telemetry: Telemetry | None = None  # set by the client; None: nothing to observe
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None
        self._held: asyncio.Semaphore | None = None
        self.files = LocalFiles()

    def holding(self) -> asyncio.Semaphore:
        """Bounds the uploads under way across the client, from the first read to complete.

        A small file is read whole before its init, so without this bound a web backend
        with thousands of requests uploading at once would hold them all in memory while
        they wait for a PUT slot. Twice the PUT bound lets inits and completes overlap PUTs.
        """
        if self._held is None:
            self._held = asyncio.Semaphore(2 * self._max_concurrent)
        return self._held

    def _ensure(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        if self._session is None or self._slots is None:
            self._slots = asyncio.Semaphore(self._max_concurrent)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_concurrent),
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
                auto_decompress=False,  # an error body is only quoted: never inflate a bomb
            )
        return self._session, self._slots

    async def aclose(self) -> None:
        self.files.shutdown()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def put(
        self,
        ticket: UploadTicket,
        source: Source,
        *,
        checksum: bool,
        on_write: Callable[[int], None],
        resend: int = 0,
    ) -> Stored:
        """Send ``source`` to the ticket's URL once; its sha256 (when asked) and ETag."""
        watch = self._deadlines()
        session, slots = self._ensure()
        task = asyncio.current_task()
        assert task is not None
        headers = ticket.headers
        has_type = any(k.lower() == "content-type" for k in headers)
        content_type = headers.get("Content-Type", source.content_type)
        small = source.whole  # aiohttp warns about bigger bytes bodies
        body: _Bytes | StreamingBody
        streaming: StreamingBody | None = None
        if small:
            # One write of the whole body: no chunk tasks, and the hash is kept for retries.
            digest = await source.sha256() if checksum else None
            body = _Bytes(source.value, content_type=content_type)
        else:
            body = streaming = StreamingBody(
                source, checksum=checksum, on_write=on_write, content_type=content_type
            )
        failure: Exception | None = None
        async with slots:
            guard = _StallGuard(watch, task, self.stall_timeout, body, self.answer_timeout)
            try:
                send = self._send
                if self.telemetry is not None and self.telemetry.active():
                    send = functools.partial(self._observed, self.telemetry, resend, watch, task)
                status, retry_after, text, etag = await send(
                    session, ticket, body, headers, has_type
                )
            except asyncio.CancelledError:
                if not watch.expired(task):
                    raise
                failure = PutOutcome(self._stalled(source, answering=guard.delivered))
            except Exception as exc:
                failure = self._body_failure(body) or self._put_failed(exc, ticket)
            finally:
                guard.stop()
                if streaming is not None:
                    await streaming.settle()
        if failure is not None:
            # Raised here, with no chain: aiohttp's exceptions hold the signed URL.
            raise detached(failure)
        if streaming is not None:
            if isinstance(streaming.failure, GatewayError):
                raise streaming.failure
            digest = streaming.digest
        self._classify(status, retry_after, redact(text, ticket.upload_url))
        if small:
            on_write(source.size)
        return Stored(digest, etag)

    async def _observed(
        self,
        observer: Telemetry,
        resend: int,
        watch: DeadlineWatch,
        task: asyncio.Task[object],
        session: aiohttp.ClientSession,
        ticket: UploadTicket,
        body: payload.Payload,
        headers: Mapping[str, str],
        has_type: bool,
    ) -> tuple[int, float | None, str, str | None]:
        """``_send`` inside a CLIENT span and the event hooks; never with ``traceparent``."""
        return await observer.attempt(
            lambda sent: self._send(session, ticket, body, sent, has_type),
            lambda answer: (answer[0], None),
            method=ticket.method,
            url=URL(ticket.upload_url, encoded=True),
            template=None,
            resend=resend,
            headers=headers,
            overdue=lambda: watch.overdue(task),
        )

    async def _send(
        self,
        session: aiohttp.ClientSession,
        ticket: UploadTicket,
        body: payload.Payload,
        headers: Mapping[str, str],
        has_type: bool,
    ) -> tuple[int, float | None, str, str | None]:
        async with session.request(
            ticket.method,
            URL(ticket.upload_url, encoded=True),  # byte for byte: re-quoting breaks signatures
            data=body,
            headers=headers,
            allow_redirects=False,
            skip_auto_headers=None if has_type else _NO_TYPE,
        ) as resp:
            etag = resp.headers.get("ETag")
            if 200 <= resp.status < 300 and resp.content.at_eof():
                return resp.status, None, "", etag  # the usual answer: nothing more to read
            text = (await resp.content.read(_MAX_ERROR_BODY)).decode("utf-8", "replace")
            if resp.headers.get("Content-Encoding", "identity").lower() != "identity":
                text = f"({resp.headers['Content-Encoding'][:40]} body)"
            return resp.status, parse_retry_after(resp.headers.get("Retry-After")), text, etag

    @staticmethod
    def _put_failed(exc: Exception, ticket: UploadTicket) -> GatewayError | PutOutcome:
        """A PUT that got no usable answer: worth retrying, and named without the signature."""
        if isinstance(exc, GatewayError):
            return exc
        detail = describe_foreign(exc, secret=ticket.upload_url)
        return PutOutcome(UploadError(f"storage PUT failed: {detail}", retryable=True))

    def _stalled(self, source: Source, *, answering: bool) -> UploadError:
        if answering:
            return UploadError(
                f"{source.identity}: storage did not answer the PUT within "
                f"{self.answer_timeout:g} s of receiving the whole body (the attempt timeout)",
                retryable=True,
            )
        return UploadError(
            f"{source.identity}: storage PUT stalled (no progress for {self.stall_timeout:g} s)",
            retryable=True,
        )

    @staticmethod
    def _body_failure(body: object) -> GatewayError | None:
        """A failure of the source itself (changed file, bad chunk) beats the socket error."""
        failure = body.failure if isinstance(body, StreamingBody) else None
        return failure if isinstance(failure, GatewayError) else None

    @staticmethod
    def _classify(status: int, retry_after: float | None, text: str) -> None:
        """Raise for anything but a 2xx: refused (init again), retryable, or final."""
        if 200 <= status < 300:
            return
        if status in _REFUSED_STATUSES:
            raise TicketRefused(status)
        retryable = status in _RETRY_STATUSES or (status == 400 and "RequestTimeout" in text)
        error = UploadError(
            f"storage answered HTTP {status} to the PUT: {text[:200].strip() or '(empty body)'}",
            status_code=status,
            retryable=retryable,
        )
        if retryable:
            raise PutOutcome(error, retry_after)
        raise error

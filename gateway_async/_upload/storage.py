"""The storage side of an upload: its own aiohttp session and the PUT to a pre-signed URL.

The storage session shares nothing with the API session: no default headers, no cookie jar,
no redirects, so the Gateway's ``X-API-Key`` or ``Authorization`` can never reach a storage
host (aiohttp strips only Authorization and cookies on cross-origin redirects, not custom
headers). It has no total timeout either (aiohttp's default 300 s would kill every upload
longer than five minutes); a stall watchdog, no byte written for ``stall_timeout`` seconds,
takes its place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Final

import aiohttp
from aiohttp import payload
from yarl import URL

from .._deadline import DeadlineWatch
from .._errors import GatewayError, UploadError
from .._retry import parse_retry_after
from ..models import UploadTicket
from .files import LocalFiles
from .payload import StreamingBody
from .sources import Source

__all__ = ["PutOutcome", "Storage", "TicketRefused"]

_RETRY_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
_REFUSED_STATUSES: Final = frozenset({403, 410})  # signature expired or refused: init again
_MAX_ERROR_BODY: Final = 4096
_NO_TYPE: Final = ("Content-Type",)  # when init names no type, send none (it may be signed)


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


class Storage:
    """Owns the storage session and the client-wide bound on concurrent PUTs."""

    def __init__(
        self,
        *,
        max_concurrent: int,
        connect_timeout: float | None,
        stall_timeout: float,
        deadlines: Callable[[], DeadlineWatch],
    ) -> None:
        self._max_concurrent = max_concurrent
        self._connect_timeout = connect_timeout
        self.stall_timeout = stall_timeout
        self._deadlines = deadlines
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
    ) -> str | None:
        """Send ``source`` to the ticket's URL once; return its sha256 (when asked)."""
        watch = self._deadlines()
        session, slots = self._ensure()
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        headers = ticket.headers
        has_type = any(k.lower() == "content-type" for k in headers)
        content_type = headers.get("Content-Type", source.content_type)
        small = source.whole  # aiohttp warns about bigger bytes bodies
        body: payload.Payload
        streaming: StreamingBody | None = None
        if small:
            # One write of the whole body: no chunk tasks, and the hash is kept for retries.
            digest = await source.sha256() if checksum else None
            body = payload.BytesPayload(source.value, content_type=content_type)
        else:

            def wrote(sent: int) -> None:
                watch.watch(task, loop.time() + self.stall_timeout)
                on_write(sent)

            body = streaming = StreamingBody(
                source, checksum=checksum, on_write=wrote, content_type=content_type
            )
        async with slots:
            watch.watch(task, loop.time() + self.stall_timeout)
            try:
                status, retry_after, text = await self._send(
                    session, ticket, body, headers, has_type
                )
            except asyncio.CancelledError:
                if watch.expired(task):
                    raise PutOutcome(self._stalled(source)) from None
                raise
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._body_failure(body) or PutOutcome(
                    UploadError(f"storage PUT failed: {type(exc).__name__}: {exc}", retryable=True)
                ) from exc
            finally:
                if streaming is not None:
                    await streaming.settle()
                watch.release(task)
        if streaming is not None:
            if isinstance(streaming.failure, GatewayError):
                raise streaming.failure
            digest = streaming.digest
        self._classify(status, retry_after, text)
        if small:
            on_write(source.size)
        return digest

    async def _send(
        self,
        session: aiohttp.ClientSession,
        ticket: UploadTicket,
        body: payload.Payload,
        headers: Mapping[str, str],
        has_type: bool,
    ) -> tuple[int, float | None, str]:
        async with session.request(
            ticket.method,
            URL(ticket.upload_url, encoded=True),  # byte for byte: re-quoting breaks signatures
            data=body,
            headers=headers,
            allow_redirects=False,
            skip_auto_headers=None if has_type else _NO_TYPE,
        ) as resp:
            if 200 <= resp.status < 300 and resp.content.at_eof():
                return resp.status, None, ""  # the usual answer: nothing more to read
            text = (await resp.content.read(_MAX_ERROR_BODY)).decode("utf-8", "replace")
            return resp.status, parse_retry_after(resp.headers.get("Retry-After")), text

    def _stalled(self, source: Source) -> UploadError:
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

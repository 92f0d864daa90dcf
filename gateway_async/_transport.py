"""The single request path to the Gateway API: every call of every resource goes through here.

One place builds URLs (yarl; path parameters as single percent-encoded segments), sets the
headers (credential, User-Agent, Idempotency-Key), runs the retry loop under one deadline,
follows same-origin redirects only, and turns aiohttp's errors and non-2xx answers into the
SDK's error hierarchy.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import platform
import time
import zlib
from collections.abc import Mapping
from typing import Any, Final, NamedTuple
from urllib.parse import quote

import aiohttp
import attrs
from yarl import URL

from ._config import NOT_GIVEN, Credentials, Limits, NotGiven, Timeouts, call_timeouts
from ._convert import dumps
from ._deadline import DeadlineWatch, InFlight
from ._errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    ConfigurationError,
    GatewayError,
    InvalidRequestError,
    RateLimitError,
    detached,
    error_from_response,
    executed_outcome,
    mark_unknown,
)
from ._logging import logger
from ._retry import RetryPolicy, parse_retry_after
from ._telemetry import Telemetry, url_template
from ._version import __version__

__all__ = [
    "MAX_RESPONSE_BYTES",
    "Reply",
    "Transport",
    "closed_error",
    "describe_foreign",
    "foreign_error",
    "new_idempotency_key",
    "read_body",
    "redact",
    "user_agent",
]

MAX_RESPONSE_BYTES: Final = 32 * 1024 * 1024
# The encodings this client inflates itself (counting inflated bytes, see _inflate); it asks
# for no others, so a server sending br or zstd anyway gets a typed error.
ACCEPT_ENCODING: Final = "gzip, deflate"
_WBITS: Final = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": 0}
_READ_CHUNK: Final = 1 << 16
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS: Final = 3


def user_agent() -> str:
    major, minor, _ = platform.python_version_tuple()
    aiohttp_version = ".".join(aiohttp.__version__.split(".")[:2])
    return f"gateway-async/{__version__} python/{major}.{minor} aiohttp/{aiohttp_version}"


def new_idempotency_key() -> str:
    """128 random bits as hex: as unique as a uuid4, without building a UUID object."""
    return os.urandom(16).hex()


class Reply(NamedTuple):
    """A decoded 2xx answer (a tuple: it is built on the hot path of every call)."""

    status: int
    data: Any
    request_id: str | None
    replayed: bool = False


class _RetryableError(Exception):
    """Internal: an attempt failed in a way that may succeed if tried again."""

    def __init__(self, error: GatewayError, retry_after: float | None = None) -> None:
        self.error = error
        self.retry_after = retry_after


def segment(value: str, *, field: str) -> str:
    """Percent-encode one path parameter as a single segment; dot segments are refused."""
    if not isinstance(value, str) or value in ("", ".", ".."):
        raise InvalidRequestError(f"{field}: {value!r} is not a valid identifier", field=field)
    try:
        return quote(value, safe="")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800") has no UTF-8 form
        raise InvalidRequestError(
            f"{field}: {value!a:.60} holds a lone surrogate, which is not text; pass the "
            "identifier as the Gateway spelled it",
            field=field,
        ) from None


class Transport:
    """Owns (or borrows) the API session and sends every API request.

    ``session=`` lets a caller share its own ``aiohttp.ClientSession``; the transport then
    never closes it. Otherwise the session is created lazily inside the running loop and
    closed by ``aclose()``.
    """

    def __init__(
        self,
        *,
        base_url: URL,
        credentials: Credentials,
        timeouts: Timeouts,
        retry: RetryPolicy,
        limits: Limits,
        session: aiohttp.ClientSession | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.base_url = base_url
        self.telemetry = telemetry  # None: no OpenTelemetry and no event hooks
        self.timeouts = timeouts
        self.retry = retry
        self._limits = limits
        self._origin = base_url.origin()
        self._session = session
        self._owns_session = session is None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._urls: dict[str, URL] = {}
        self._prefix = base_url.raw_path.rstrip("/")
        self._pause_until = 0.0
        self.sleep = asyncio.sleep  # one seam, so tests can observe backoff without waiting
        base = {
            "User-Agent": user_agent(),
            "Accept": "application/json",
            "Accept-Encoding": ACCEPT_ENCODING,
            **credentials.headers(),
        }
        # What every request sends; an owned session sends it as its default headers (one
        # C-level copy per request instead of a Python loop over them in aiohttp), and then
        # each request passes only what varies. Hooks and spans always see all of them.
        owned = session is None
        self._in_session: Mapping[str, str] = base if owned else {}
        self._get_headers: Mapping[str, str] = {} if owned else base
        self._post_headers = {**self._get_headers, "Content-Type": "application/json"}
        self._connect_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect)
        self._watch: DeadlineWatch | None = None
        self.in_flight = InFlight()

    # -- session and loop ------------------------------------------------------------------

    def session(self) -> aiohttp.ClientSession:
        """The API session, created on first use inside the running loop."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._watch = DeadlineWatch(loop)
        elif loop is not self._loop:
            raise ConfigurationError(
                "this Gateway is bound to the event loop it was first used in; "
                "create one Gateway per event loop (e.g. per asyncio.run call)"
            )
        if self._closed:
            raise ConfigurationError("this Gateway is closed; create a new one")
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections,
                ttl_dns_cache=self._limits.dns_cache_ttl,
                keepalive_timeout=self._limits.keepalive_timeout,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),
                raise_for_status=False,
                headers=self._in_session,  # only ever sent to the Gateway: redirects stay in it
            )
        return self._session

    def deadlines(self) -> DeadlineWatch:
        """The client's deadline watch (the upload engine's stall watchdog uses it too)."""
        self.session()
        assert self._watch is not None
        return self._watch

    async def aclose(self, timeout: float = 1.0) -> None:
        """Refuse new calls, wait up to ``timeout`` s for those in flight, fail the rest
        (``APIConnectionError``: the client was closed), then close the session."""
        self._closed = True
        await self.in_flight.drain(timeout)
        if self._watch is not None:
            self._watch.close()
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    # -- URLs ------------------------------------------------------------------------------

    def url(self, path: str) -> URL:
        """The absolute URL of an API path (already percent-encoded), cached per path."""
        url = self._urls.get(path)
        if url is None:
            url = self.base_url.with_path(self._prefix + path, encoded=True)
            if len(self._urls) < 256:
                self._urls[path] = url
        return url

    # -- requests --------------------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Hold every new request of this client for ``seconds`` (a server's Retry-After)."""
        loop = self._loop or asyncio.get_running_loop()
        self._pause_until = max(self._pause_until, loop.time() + seconds)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        timeout: float | Timeouts | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
    ) -> Reply:
        """Send one logical call, retrying it under the policy within one total deadline.

        Whatever fails reaches the caller without a ``__cause__``/``__context__`` chain: the
        chain would lead to aiohttp's exception and the request it holds (the API key).
        A call still in flight when ``aclose()`` gives up waiting fails with
        ``APIConnectionError`` saying so.
        """
        task = asyncio.current_task()
        assert task is not None
        self.in_flight.enter(task)
        try:
            return await self._request(
                method,
                path,
                body=body,
                params=params,
                idempotency_key=idempotency_key,
                timeout=timeout,
                max_retries=max_retries,
            )
        except GatewayError as exc:
            error = exc
        except asyncio.CancelledError:
            if not self.in_flight.cut_off(task):
                raise
            error = closed_error(f"{method} {path}")
        finally:
            self.in_flight.leave(task)
        raise detached(error)  # outside the except block, or Python chains it again

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any,
        params: Mapping[str, str] | None,
        idempotency_key: str | None,
        timeout: float | Timeouts | NotGiven | None,
        max_retries: int | NotGiven,
    ) -> Reply:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or loop is not self._loop or self._closed:
            session = self.session()
        timeouts = self._resolve_timeouts(timeout)
        policy = self.retry
        if not isinstance(max_retries, NotGiven):
            policy = attrs.evolve(policy, max_retries=max_retries)
        headers = self._get_headers
        data: bytes | None = None
        if method != "GET":
            headers = {
                **self._post_headers,
                "Idempotency-Key": idempotency_key or new_idempotency_key(),
            }
            data = _encode(body)
        deadline = None if timeouts.total is None else loop.time() + timeouts.total
        url = self.url(path)
        retry = 0
        last_error: GatewayError | None = None
        observer = self.telemetry
        unknown = False  # an attempt may have executed, and its answer was never seen
        while True:
            if self._pause_until and self._pause_until > loop.time():
                await self._sleep_within(self._pause_until - loop.time(), deadline, last_error)
            send = self._attempt
            if observer is not None and observer.active():
                send = functools.partial(self._observed, observer, path, retry)
            try:
                connect = self._connect_timeout_for(timeouts)
                due = self._attempt_due(timeouts, deadline, loop.time())
                if due is None:
                    reply = await send(session, method, url, data, headers, params, connect)
                else:
                    # Inline rather than a helper coroutine: one frame less on the hot path.
                    task = asyncio.current_task()
                    assert task is not None
                    assert self._watch is not None
                    self._watch.watch(task, due)
                    try:
                        reply = await send(session, method, url, data, headers, params, connect)
                    except asyncio.CancelledError:
                        if self._watch.expired(task):
                            error = _timed_out(method, url.path, timeouts, due == deadline)
                            raise _RetryableError(error) from None
                        raise
                    finally:
                        self._watch.release(task)
                # A replay of this call's own earlier attempt is this call's execution: only
                # the replay of an earlier *call* means nothing was executed or charged now.
                return reply._replace(replayed=False) if unknown else reply
            except _RetryableError as failure:
                last_error = failure.error
                if unknown and method != "GET":
                    mark_unknown(failure.error)  # a retry's answer cannot tell what ran before
                unknown = unknown or executed_outcome(failure.error) == "unknown"
                delay = policy.delay(retry, failure.retry_after)
                if delay is None:
                    raise failure.error from None
                retry += 1
                if observer is not None:
                    observer.retried(failure.error, delay)
                logger.debug(
                    "retry %d of %s %s in %.2fs: %s", retry, method, path, delay, failure.error
                )
                if failure.retry_after is not None and isinstance(failure.error, RateLimitError):
                    # Client-wide: every task of this client waits, not only this one.
                    self.pause(delay)
                    continue
                await self._sleep_within(delay, deadline, failure.error)
            except GatewayError as answer:  # a final answer (a 4xx) to this attempt
                if unknown and method != "GET":
                    mark_unknown(answer)
                raise

    def _resolve_timeouts(self, timeout: float | Timeouts | NotGiven | None) -> Timeouts:
        return call_timeouts(self.timeouts, timeout)

    async def _sleep_within(
        self, delay: float, deadline: float | None, error: GatewayError | None
    ) -> None:
        """Sleep ``delay`` unless that passes the deadline; then fail with the last error."""
        loop = asyncio.get_running_loop()
        if deadline is not None and loop.time() + delay >= deadline:
            if error is not None:
                raise error
            raise APITimeoutError("the call's deadline passed while the client was paused")
        await self.sleep(delay)

    def _attempt_due(self, timeouts: Timeouts, deadline: float | None, now: float) -> float | None:
        """When this attempt must end: its own bound, cut short by the call's deadline."""
        due = None if timeouts.attempt is None else now + timeouts.attempt
        if deadline is not None:
            if deadline <= now:
                raise _RetryableError(APITimeoutError("the call's total deadline passed"))
            due = deadline if due is None else min(due, deadline)
        return due

    def _connect_timeout_for(self, timeouts: Timeouts) -> aiohttp.ClientTimeout:
        if timeouts.connect == self.timeouts.connect:
            return self._connect_timeout
        return aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect)

    async def _observed(
        self,
        observer: Telemetry,
        path: str,
        resend: int,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        data: bytes | None,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        connect_timeout: aiohttp.ClientTimeout,
    ) -> Reply:
        """``_attempt`` inside a CLIENT span (with ``traceparent``) and the event hooks."""
        task = asyncio.current_task()
        assert task is not None
        assert self._watch is not None
        watch = self._watch
        return await observer.attempt(
            lambda sent: self._attempt(session, method, url, data, sent, params, connect_timeout),
            _answer,
            method=method,
            url=url,
            template=url_template(path),
            resend=resend,
            headers={**self._in_session, **headers},
            overdue=lambda: watch.overdue(task),
        )

    async def _attempt(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        data: bytes | None,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        connect_timeout: aiohttp.ClientTimeout,
    ) -> Reply:
        """One attempt: send, read, decode; same-origin redirects are followed here."""
        for _ in range(_MAX_REDIRECTS + 1):
            started = time.perf_counter() if logger.isEnabledFor(logging.DEBUG) else 0.0
            try:
                async with session.request(
                    method,
                    url,
                    data=data,
                    headers=headers,
                    params=params,
                    timeout=connect_timeout,
                    allow_redirects=False,
                    auto_decompress=False,  # inflated here, counted against the cap
                ) as resp:
                    status, rid = resp.status, resp.headers.get("X-Request-Id")
                    length = resp.content_length
                    if (
                        length is not None
                        and length <= MAX_RESPONSE_BYTES
                        and "Content-Encoding" not in resp.headers
                    ):
                        raw = await resp.read()  # the usual answer: one frame less
                    else:
                        raw = await read_body(resp, rid)
                    if status in _REDIRECTS:
                        url, method, data = self._redirect(resp, url, method, data)
                        continue
                    reply = self._decode(resp, status, raw, rid)
            except (_RetryableError, GatewayError):
                raise
            except Exception as exc:
                error = foreign_error(exc, f"{method} {url.path}")
                if isinstance(error, APIConnectionError):
                    raise _RetryableError(error) from exc
                raise error from exc
            if started:
                logger.debug(
                    "%s %s -> %d in %.1f ms (request_id=%s)",
                    method,
                    url.path,
                    status,
                    (time.perf_counter() - started) * 1000,
                    rid,
                )
            return reply
        raise APIStatusError(
            f"more than {_MAX_REDIRECTS} redirects", status_code=310, code="too_many_redirects"
        )

    def _redirect(
        self, resp: aiohttp.ClientResponse, url: URL, method: str, data: bytes | None
    ) -> tuple[URL, str, bytes | None]:
        """Follow a redirect only within the Gateway's origin: credentials never leave it."""
        target = _location(resp, url)
        if target is None or target.origin() != self._origin:
            where = target.origin() if target is not None and target.host else "nowhere"
            raise APIStatusError(
                f"redirect to {where} not followed: the Gateway's credentials never go to "
                "another origin",
                status_code=resp.status,
                code="redirect_refused",
                request_id=resp.headers.get("X-Request-Id"),
            )
        if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
            return target, "GET", None
        return target, method, data

    def _decode(
        self, resp: aiohttp.ClientResponse, status: int, raw: bytes, rid: str | None
    ) -> Reply:
        if 200 <= status < 300:
            try:
                data = json.loads(raw) if raw else None
            except (ValueError, RecursionError) as exc:  # RecursionError: 100,000 nested "["
                # A cut-off body is a transport fault: retrying is safe (idempotency key).
                raise _RetryableError(
                    APIResponseValidationError(
                        f"HTTP {status} with a body that is not valid JSON ({len(raw)} bytes)",
                        status_code=status,
                        request_id=rid,
                    )
                ) from exc
            return Reply(status, data, rid, resp.headers.get("Idempotent-Replayed") == "true")
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        error = error_from_response(
            status, raw, reason=resp.reason, request_id=rid, retry_after=retry_after
        )
        if self.retry.retryable_status(status):
            raise _RetryableError(error, retry_after)
        raise error


def _answer(reply: Reply) -> tuple[int, str | None]:
    return reply.status, reply.request_id


def _encode(body: Any) -> bytes:
    """The request body as JSON, or InvalidRequestError before any byte is sent."""
    try:
        return dumps(body if body is not None else {})
    except (TypeError, ValueError, RecursionError, OverflowError) as exc:
        raise InvalidRequestError(
            f"body: cannot be encoded as JSON ({type(exc).__name__}: {str(exc)[:120]}); "
            "send only str, int, float, bool, None, lists and dicts",
            field="body",
        ) from None


def _location(resp: aiohttp.ClientResponse, url: URL) -> URL | None:
    """The redirect's target, or None when there is none or it cannot be parsed."""
    location = resp.headers.get("Location")
    if not location:
        return None
    try:
        target = url.join(URL(location))
        target.origin()
    except (ValueError, TypeError):
        return None
    return target


def describe_foreign(exc: BaseException, *, secret: str | None = None) -> str:
    """A foreign exception as one line, with ``secret`` (a signed URL) cut out of it.

    aiohttp puts the full request URL into many messages (``ClientResponseError``'s str,
    ``InvalidURL``); a pre-signed URL's query is its credential.
    """
    if isinstance(exc, aiohttp.ClientResponseError):
        text = f"{type(exc).__name__}: {exc.message}"
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return redact(" ".join(text.split())[:300], secret)  # one line, whatever aiohttp wrote


def redact(text: str, secret: str | None) -> str:
    """``text`` without the signed URL ``secret``, its query, or any of its query values."""
    if not secret:
        return text
    try:
        url = URL(secret, encoded=True)
        leaks = {secret, str(url), url.raw_query_string, url.query_string}
        leaks.update(value for pair in url.raw_query_string.split("&") for value in pair.split("="))
        leaks.update(url.query.values())
    except (ValueError, TypeError):
        leaks = {secret}
    for leak in sorted((x for x in leaks if len(x) >= 6), key=len, reverse=True):
        text = text.replace(leak, "<redacted>")
    return text


def _timed_out(method: str, path: str, timeouts: Timeouts, total: bool) -> APITimeoutError:
    """Which deadline passed, how long it was, and the argument that changes it."""
    if total:
        bound = f"timeout={timeouts.total:g} s, the call's total deadline (every attempt)"
    else:
        bound = f"Timeouts(attempt={timeouts.attempt:g}) s, one attempt's bound"
    return APITimeoutError(
        f"{method} {path} timed out: no answer within {bound}; pass timeout=SECONDS (per client or "
        "per call) to wait longer"
    )


def closed_error(what: str) -> APIConnectionError:
    """The error of a call cut off because its client was closed while it was in flight."""
    return APIConnectionError(
        f"{what}: the Gateway was closed (aclose()) while this call was in flight; it may "
        "have been executed: send it again, with the same idempotency key, from an open "
        "client (aclose(timeout=...) waits longer for calls in flight)"
    )


def foreign_error(exc: BaseException, what: str, *, secret: str | None = None) -> GatewayError:
    """The one place where an exception of aiohttp, json, yarl or zlib becomes ours.

    Timeouts and everything aiohttp raises for a failed exchange (refused, reset, a status
    line or header it cannot parse) are connection errors, worth retrying under an
    idempotency key; anything else means the answer itself is unusable.
    """
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, TimeoutError):
        return APITimeoutError(f"{what} timed out")
    detail = describe_foreign(exc, secret=secret)
    if isinstance(exc, aiohttp.ClientError):
        return APIConnectionError(f"{what} failed: {detail}")
    return APIResponseValidationError(f"{what}: the response could not be read ({detail})")


async def read_body(
    resp: aiohttp.ClientResponse, request_id: str | None, limit: int = MAX_RESPONSE_BYTES
) -> bytes:
    """The whole body, inflated, refusing more than ``limit`` bytes instead of exhausting RAM.

    The cap counts inflated bytes: a compressed body's Content-Length says nothing about
    its size once inflated (a 200 KB gzip body can hold 200 MB).
    """
    encoding = resp.headers.get("Content-Encoding", "").strip().lower()
    length = resp.content_length
    if encoding in ("", "identity"):
        if length is not None and length <= limit:
            return await resp.read()
        return await _read_limited(resp, request_id, limit)
    if encoding not in _WBITS:
        raise APIResponseValidationError(
            f"response with Content-Encoding {encoding[:40]!r} refused: the client asked "
            f"for {ACCEPT_ENCODING}",
            status_code=resp.status,
            request_id=request_id,
        )
    return await _inflate(resp, request_id, limit, encoding)


async def _inflate(
    resp: aiohttp.ClientResponse, request_id: str | None, limit: int, encoding: str
) -> bytes:
    """Inflate while reading, in steps of at most ``_READ_CHUNK`` bytes, up to ``limit``."""
    inflater: Any = None
    parts: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_READ_CHUNK):
        if inflater is None:  # deflate is zlib-wrapped by the RFC, raw by some servers
            wbits = _WBITS[encoding] or (15 if chunk[:1] == b"\x78" else -15)
            inflater = zlib.decompressobj(wbits)
        pending = chunk
        while pending:
            try:
                part = inflater.decompress(pending, _READ_CHUNK)
            except zlib.error as exc:
                raise APIResponseValidationError(
                    f"HTTP {resp.status} with a {encoding} body that does not inflate ({exc})",
                    status_code=resp.status,
                    request_id=request_id,
                ) from None
            size += len(part)
            if size > limit:
                raise _too_large(resp.status, request_id, limit)
            parts.append(part)
            pending = inflater.unconsumed_tail
    return b"".join(parts)


async def _read_limited(
    resp: aiohttp.ClientResponse, request_id: str | None, limit: int = MAX_RESPONSE_BYTES
) -> bytes:
    """The whole body, refusing one larger than ``limit`` instead of exhausting RAM."""
    length = resp.content_length
    if length is not None and length > limit:
        raise _too_large(resp.status, request_id, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise _too_large(resp.status, request_id, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(
    status: int, request_id: str | None, limit: int = MAX_RESPONSE_BYTES
) -> APIResponseValidationError:
    return APIResponseValidationError(
        f"response body larger than {limit} bytes refused",
        status_code=status,
        request_id=request_id,
    )

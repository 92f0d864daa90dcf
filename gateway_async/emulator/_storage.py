"""The storage listener: ``PUT /storage/{upload_id}`` behind pre-signed URLs.

It runs on its own port (another origin, like object storage) and answers like an object
store, with small S3-style XML errors: credentials in the request ``400`` (and counted in
``stats.credential_leaks``), a bad or expired signature or a wrong Content-Type ``403``, no
Content-Length or a chunked body ``411``, more than the limit ``413``, another length than
declared ``400``. The body streams to a temporary file chunk by chunk while its sha256 is
computed, and is renamed into place only when exactly the declared size arrived. File
writes are plain blocking calls of at most 256 KiB: cheap on a local disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web

from ._body import answer_and_close
from ._core import CORE, Core
from ._faults import Decision
from ._signing import verify
from ._state import Upload
from ._wire import new_id

ROUTE = "PUT /storage"
CHUNK = 256 * 1024


class StorageError(Exception):
    """An object-store style refusal."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> web.Response:
        """The XML error response."""
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{self.code}</Code><Message>{escape(self.message)}</Message></Error>"
        )
        return web.Response(status=self.status, text=body, content_type="application/xml")


@dataclass(frozen=True)
class Target:
    """What one signed PUT may store: its exact size, where, and what to record once the
    bytes are in place (given their sha256, it returns the ETag)."""

    size: int
    dest: Path
    stored: Callable[[str], str]


Resolve = Callable[[Core, web.Request, Upload], Target]


async def put_object(request: web.Request) -> web.Response:
    """Handle one PUT of a whole upload's bytes."""
    return await serve_put(request, _whole)


def _whole(core: Core, request: web.Request, upload: Upload) -> Target:
    def stored(sha256: str) -> str:
        upload.put_sha256 = sha256
        core.state.save_upload(upload)
        return f'"{sha256[:32]}"'

    return Target(upload.size, core.upload_file(upload.upload_id), stored)


async def serve_put(request: web.Request, resolve: Resolve) -> web.Response:
    """One signed PUT (a whole upload or one part): faults, checks, then the bytes."""
    core = request.app[CORE]
    core.stats.requests_by_route[ROUTE] += 1
    core.stats.puts += 1
    decision = core.faults.decide(ROUTE)
    try:
        await _inject(core, decision)
        target = _authorise(core, request, resolve)
        size = _check_length(core, request, target.size)
        if decision.reset:
            core.stats.faults_injected["reset"] += 1
            core.stats.bytes_received += len(await request.content.read(max(1, size // 2)))
            request.transport.abort()  # type: ignore[union-attr]
            return web.Response(status=500)
        etag = target.stored(await _store(core, request, target))
    except StorageError as exc:
        response = exc.response()
        if exc.code == "RequestTimeout":  # the rest of a stalled body is not worth waiting for
            await answer_and_close(request, response)
        return response
    return web.Response(status=200, headers={"ETag": etag})


async def _inject(core: Core, decision: Decision) -> None:
    if decision.latency:
        core.stats.faults_injected["latency"] += 1
        await asyncio.sleep(decision.latency)
    if decision.status is not None:
        core.stats.faults_injected[str(decision.status)] += 1
        raise StorageError(503, "SlowDown", "Please reduce your request rate.")


def _authorise(core: Core, request: web.Request, resolve: Resolve) -> Target:
    if "X-API-Key" in request.headers or "Authorization" in request.headers:
        core.stats.credential_leaks += 1
        raise StorageError(
            400,
            "InvalidRequest",
            "Gateway credentials must never be sent to "
            "storage: send only the headers returned by upload/init",
        )
    found = core.hub.find_upload(request.match_info["upload_id"])
    upload = None if found is None else found[1]
    target = None if found is None else resolve(found[0], request, found[1])
    expires = None if target is None else verify(core.secret, request.raw_path, target.size)
    if upload is None or target is None or expires is None:
        raise StorageError(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated "
            "does not match the signature you provided. Send the upload_url as is.",
        )
    if core.clock() > expires:
        raise StorageError(403, "AccessDenied", "Request has expired")
    if request.headers.get("Content-Type", "") != upload.content_type:
        raise StorageError(
            403,
            "SignatureDoesNotMatch",
            "Content-Type must be "
            f"{upload.content_type!r}, as in the headers returned by upload/init",
        )
    return target


def _check_length(core: Core, request: web.Request, expected: int) -> int:
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    length = request.content_length
    if chunked or length is None:
        raise StorageError(
            411,
            "MissingContentLength",
            "You must provide the Content-Length "
            "HTTP header; chunked transfer encoding is not accepted.",
        )
    if length > core.settings.max_upload_size:
        raise StorageError(
            413,
            "EntityTooLarge",
            "Your proposed upload exceeds the maximum "
            f"allowed size of {core.settings.max_upload_size} bytes.",
        )
    if length != expected:
        raise StorageError(
            400,
            "IncompleteBody",
            f"Content-Length {length} does not match the size {expected} declared at upload/init.",
        )
    return length


async def _next_chunk(request: web.Request, idle_timeout: float) -> bytes:
    """Up to CHUNK more bytes (b"" at the end); S3's RequestTimeout when the body stalls."""
    try:
        async with asyncio.timeout(idle_timeout):
            return await request.content.read(CHUNK)
    except TimeoutError:
        raise StorageError(
            400,
            "RequestTimeout",
            "Your socket connection to the server was not read from or written to within "
            "the timeout period.",
        ) from None


async def _store(core: Core, request: web.Request, target: Target) -> str:
    """Stream the body to disk; on success move it into place and return its sha256."""
    temp = core.media_root / "tmp" / new_id("put")
    digest, received = hashlib.sha256(), 0
    try:
        with temp.open("wb") as out:
            while chunk := await _next_chunk(request, core.settings.idle_timeout):
                received += len(chunk)
                core.stats.bytes_received += len(chunk)
                digest.update(chunk)
                out.write(chunk)
        if received != target.size:
            raise StorageError(
                400, "IncompleteBody", "The body ended before Content-Length bytes arrived."
            )
        target.dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, target.dest)
    except (OSError, aiohttp.ClientError) as exc:
        raise StorageError(400, "IncompleteBody", f"The body could not be read: {exc}") from exc
    finally:
        temp.unlink(missing_ok=True)
    return digest.hexdigest()

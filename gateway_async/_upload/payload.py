"""The request body of a storage PUT: exactly ``size`` bytes, hashed and counted on the way.

aiohttp sends ``Content-Length`` only for a payload that reports its size; without it, it
falls back to chunked transfer encoding, which pre-signed storage URLs refuse. aiohttp also
clips a body that is too long and hangs on one that is too short, so the payload itself
checks the count and fails the attempt instead.

A thread of the source's own reads and hashes ahead (hashlib releases the GIL) while this
payload writes, and the payload asks for the next chunk before writing the current one, so
hashing overlaps with sending instead of stalling the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

from aiohttp import payload
from aiohttp.abc import AbstractStreamWriter

from .._errors import UploadError
from .sources import Source

__all__ = ["StreamingBody"]

Chunk = bytes | memoryview


class StreamingBody(payload.Payload):
    """Streams a Source once per PUT attempt. ``digest`` is the sha256 hex when it ends."""

    _autoclose = True  # the source closes its own file when the stream ends

    def __init__(
        self,
        source: Source,
        *,
        checksum: bool,
        on_write: Callable[[int], None],
        content_type: str,
    ) -> None:
        super().__init__(source, content_type=content_type)
        self._size = source.size
        self._source = source
        self._checksum = checksum
        self._on_write = on_write
        self.sent = 0
        self.digest: str | None = None
        self.failure: BaseException | None = None
        self._writer: asyncio.Task[Any] | None = None
        self.writer: AbstractStreamWriter | None = None  # for the stall guard (storage.py)
        self.written = False  # every byte handed to the writer (for the stall guard too)
        self.on_written: Callable[[], None] | None = None  # the stall guard's, told at once

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a streaming upload body cannot be decoded")

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        # aiohttp itself may write the body again on a fresh connection (an idempotent PUT
        # on a reused connection that turned out dead): every write starts from byte 0.
        self.sent, self.digest, self.failure = 0, None, None
        self.writer, self.written = writer, False
        self._writer = asyncio.current_task()
        try:
            await self._stream(writer)
            self.written = True
            if self.on_written is not None:
                self.on_written()
        except BaseException as exc:
            # aiohttp wraps body errors in ClientConnectionError; keep the real cause.
            self.failure = exc
            raise

    async def settle(self) -> None:
        """Stop aiohttp's body writer task and wait for it, so the source is closed.

        aiohttp cancels that task when the request ends but does not wait for it; without
        this, a cancelled upload could return while its file is still open.
        """
        writer = self._writer
        if writer is not None and writer is not asyncio.current_task() and not writer.done():
            writer.cancel()
            await asyncio.wait([writer])

    async def _stream(self, writer: AbstractStreamWriter) -> None:
        hasher = hashlib.sha256() if self._checksum else None
        size = self._source.size
        chunks = self._source.chunks(hasher)
        pending = asyncio.ensure_future(anext(chunks, None))
        try:
            chunk = await pending
            while chunk is not None:
                pending = asyncio.ensure_future(anext(chunks, None))
                end = self.sent + len(chunk)
                if end > size:
                    raise self._miscount("more")
                if end == size:
                    # Before the final bytes leave: reach the end of the source (and its
                    # change check) and finish the hash. Storage then never holds a complete
                    # copy of a torn source, and the digest is ready before it can answer
                    # (aiohttp cancels the body writer once the response is in).
                    if await pending is not None:
                        raise self._miscount("more")
                    self.digest = hasher.hexdigest() if hasher is not None else None
                await writer.write(chunk)
                self.sent = end
                self._on_write(end)
                chunk = None if end == size else await pending
        finally:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
            await chunks.aclose()
        if self.sent != size:
            raise self._miscount("fewer")
        if size == 0:
            self.digest = hasher.hexdigest() if hasher is not None else None

    def _miscount(self, which: str) -> UploadError:
        return UploadError(
            f"{self._source.identity}: the source gave {which} bytes than its declared size "
            f"{self._source.size}; the upload was not completed"
        )

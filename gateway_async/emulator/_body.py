"""Reading an API request body: its ``Content-Encoding``, its size and a slow sender.

aiohttp's own decoding is off for the API listener (it answered a ``br`` or ``zstd`` body
with a bare text/plain 400 before any handler ran, and executed ``x-unknown`` or
``compress`` bodies as if plain), so the body is decoded here, with the contract's errors:

* ``gzip`` and ``deflate`` (zlib or raw) are inflated, at most :data:`MAX_BODY` bytes
  (``413`` past it, so a small bomb cannot fill memory); corrupt data is ``400``;
* any other coding, a list of codings included, is ``415 unsupported_encoding``;
* a body that stops arriving for ``idle_timeout`` seconds between two chunks is ``408``
  and the connection is closed (headers have the same bound: aiohttp's keep-alive
  timeout, set to ``idle_timeout``, closes a connection whose request never completes).
"""

from __future__ import annotations

import asyncio
import zlib

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from ._errors import ApiError

MAX_BODY = 1024**2  # as aiohttp's client_max_size: every API body is small JSON
IDENTITY = ("", "identity")
DECODED = {"gzip": (zlib.MAX_WBITS | 16,), "deflate": (zlib.MAX_WBITS, -zlib.MAX_WBITS)}


async def read_body(request: web.Request, idle_timeout: float) -> bytes:
    """The decoded body (see the module docstring for every refusal)."""
    coding = request.headers.get("Content-Encoding", "").strip().lower()
    if coding not in IDENTITY and coding not in DECODED:
        raise ApiError(
            415,
            f"Content-Encoding {coding!r} is not supported; send the body as is, or "
            "compressed with gzip or deflate",
            field="Content-Encoding",
        )
    raw = await _read_raw(request, idle_timeout)
    return raw if coding in IDENTITY else _inflate(raw, coding)


async def _read_raw(request: web.Request, idle_timeout: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            async with asyncio.timeout(idle_timeout):
                chunk = await request.content.readany()
        except TimeoutError:
            raise ApiError(
                408,
                f"the request body stopped arriving for {idle_timeout:g} seconds; send it at once",
                headers={"Connection": "close"},
            ) from None
        except RequestPayloadError as exc:  # e.g. the body ended before Content-Length
            raise ApiError(400, f"the request body could not be read: {exc.args[0]}") from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY:
            raise _too_large()
        chunks.append(chunk)


def _inflate(raw: bytes, coding: str) -> bytes:
    for wbits in DECODED[coding]:
        inflater = zlib.decompressobj(wbits)
        try:
            body = inflater.decompress(raw, MAX_BODY + 1)
        except zlib.error:
            continue
        if len(body) > MAX_BODY:
            raise _too_large()
        if inflater.eof and not inflater.unused_data:
            return body
    raise ApiError(400, f"the request body is not valid {coding} data; send it as is or compressed")


async def answer_and_close(request: web.Request, response: web.StreamResponse) -> None:
    """Send ``response`` now, then close the connection. For a stalled body: aiohttp would
    otherwise keep reading it ("lingering") for 10 more seconds before closing."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()


def _too_large() -> ApiError:
    return ApiError(413, f"the request body is larger than {MAX_BODY} bytes (once decoded)")

"""The request handling both web backends share, free of any web framework.

``index_image`` streams a request body into an upload and indexes it; ``search_image``
uploads a query image and returns its nearest matches. ``examples/fastapi_backend.py`` and
``examples/aiohttp_backend.py`` only adapt their framework's request to these calls, so the
logic can also be tested with no server at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from typing import Any

from gateway_async import Gateway, GatewayError, InvalidRequestError

MODEL = "demo-image-embed"


def content_length(headers: Mapping[str, str]) -> int:
    """The body's declared size: storage needs it up front (no chunked uploads)."""
    raw = headers.get("content-length")
    if raw is None or not raw.isdigit():
        raise InvalidRequestError("send a Content-Length header", field="content-length")
    return int(raw)


def error_status(exc: GatewayError) -> int:
    """400 for a request our caller got wrong, 502 for a Gateway that failed us."""
    return 400 if isinstance(exc, InvalidRequestError) else 502


async def index_image(
    gw: Gateway,
    body: AsyncIterable[bytes],
    *,
    size: int,
    content_type: str,
    scope: str,
    filename: str = "upload",
) -> dict[str, Any]:
    """Stream ``body`` into an upload and index it into ``scope``."""
    ref = await gw.media.upload(body, size=size, content_type=content_type, filename=filename)
    run = await gw.runs.create(
        model=MODEL,
        mode="index",
        scope=scope,
        input={"image": ref},
        params={"metadata": {"filename": filename}},
    )
    return {"media_ref": ref.media_ref, "indexed": run.output["indexed"], "run": run.id}


async def search_image(
    gw: Gateway, body: AsyncIterable[bytes], *, size: int, content_type: str, scope: str
) -> list[Any]:
    """The indexed images of ``scope`` most like the one in ``body``."""
    ref = await gw.media.upload(body, size=size, content_type=content_type, filename="query")
    run = await gw.runs.create(
        model=MODEL, mode="search", scope=scope, input={"image": ref}, params={"top_k": 5}
    )
    matches: list[Any] = run.output["matches"]
    return matches

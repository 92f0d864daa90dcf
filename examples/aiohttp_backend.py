"""An aiohttp.web backend: one Gateway in ``cleanup_ctx``, request bodies streamed to storage.

    GATEWAY_API_KEY=... GATEWAY_BASE_URL=... python -m aiohttp.web -H localhost -P 8000 \\
        examples.aiohttp_backend:create_app

    curl --data-binary @cat.png -H 'Content-Type: image/png' 'localhost:8000/images?scope=pets'
    curl --data-binary @cat.png -H 'Content-Type: image/png' 'localhost:8000/search?scope=pets'

``request.content`` is read in 64 KiB chunks straight into ``gw.media.upload`` (constant
memory, no temp file); the handling itself lives in ``examples/image_search.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from gateway_async import Gateway, GatewayError

from .image_search import content_length, error_status, index_image, search_image

GATEWAY = web.AppKey("gateway", Gateway)
CHUNK = 64 * 1024


async def gateway_ctx(app: web.Application) -> AsyncIterator[None]:
    """One client (one connection pool) for the app's life, closed on shutdown."""
    async with Gateway() as gw:
        app[GATEWAY] = gw
        yield


def body_of(request: web.Request) -> dict[str, Any]:
    """The streamed body and what storage needs to know of it."""
    return {
        "gw": request.app[GATEWAY],
        "body": request.content.iter_chunked(CHUNK),
        "size": content_length(request.headers),
        "content_type": request.content_type,
    }


async def post_image(request: web.Request) -> web.Response:
    scope, filename = request.query.get("scope", ""), request.query.get("filename", "upload")
    return web.json_response(await index_image(**body_of(request), scope=scope, filename=filename))


async def post_search(request: web.Request) -> web.Response:
    scope = request.query.get("scope", "")
    return web.json_response(await search_image(**body_of(request), scope=scope))


@web.middleware
async def gateway_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """A GatewayError becomes a JSON error, as in the FastAPI example."""
    try:
        response: web.StreamResponse = await handler(request)
    except GatewayError as exc:
        return web.json_response({"error": str(exc)}, status=error_status(exc))
    return response


def create_app(argv: list[str] | None = None) -> web.Application:
    """The app (``python -m aiohttp.web`` passes ``argv``; it takes no options)."""
    app = web.Application(middlewares=[gateway_errors])
    app.cleanup_ctx.append(gateway_ctx)
    app.router.add_post("/images", post_image)
    app.router.add_post("/search", post_search)
    return app

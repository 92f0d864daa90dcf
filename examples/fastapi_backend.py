"""A FastAPI backend: one Gateway for the app's lifespan, awaited inside request handlers.

    pip install 'gateway-async[examples]'      # fastapi and uvicorn
    GATEWAY_API_KEY=... GATEWAY_BASE_URL=... uvicorn examples.fastapi_backend:app

    curl --data-binary @cat.png -H 'Content-Type: image/png' 'localhost:8000/images?scope=pets'
    curl --data-binary @cat.png -H 'Content-Type: image/png' 'localhost:8000/search?scope=pets'

Uploads stream the request body straight through to storage (no temp file, constant
memory): the body's chunks are the upload's source, its Content-Length the upload's size.
The request handling lives in ``examples/image_search.py`` (plain async functions shared
with ``examples/aiohttp_backend.py``).

No ``from __future__ import annotations`` here on purpose: FastAPI reads the handlers'
annotations at runtime to decide what ``request: Request`` means, and string annotations
of names it cannot resolve turn every request into a 422.
"""

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gateway_async import Gateway, GatewayError

from .image_search import content_length, error_status, index_image, search_image


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One client (one connection pool) for the whole app, closed at shutdown."""
    async with Gateway() as gw:
        app.state.gw = gw
        yield


app = FastAPI(lifespan=lifespan)


@app.exception_handler(GatewayError)
async def gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=error_status(exc))


def body_of(request: Request) -> dict[str, Any]:
    """The streamed body and what storage needs to know of it."""
    return {
        "gw": request.app.state.gw,
        "body": request.stream(),
        "size": content_length(request.headers),
        "content_type": request.headers.get("content-type", "application/octet-stream"),
    }


@app.post("/images")
async def post_image(request: Request, scope: str, filename: str = "upload") -> Any:
    return await index_image(**body_of(request), scope=scope, filename=filename)


@app.post("/search")
async def post_search(request: Request, scope: str) -> Any:
    return await search_image(**body_of(request), scope=scope)

"""A FastAPI backend: one Gateway for the app's lifespan, awaited inside request handlers.

    pip install fastapi uvicorn
    GATEWAY_API_KEY=... GATEWAY_BASE_URL=... uvicorn examples.fastapi_backend:app

    curl --data-binary @cat.png -H 'Content-Type: image/png' 'localhost:8000/images?scope=pets'
    curl --data-binary @cat.png -H 'Content-Type: image/png' 'localhost:8000/search?scope=pets'

Uploads stream the request body straight through to storage (no temp file, constant
memory): the body's chunks are the upload's source, its Content-Length the upload's size.
The request handling lives in plain async functions (``index_image``, ``search_image``) so
it can be tested without FastAPI; FastAPI is imported only when the app is built.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from gateway_async import Gateway, GatewayError, InvalidRequestError

if TYPE_CHECKING:
    from fastapi import FastAPI

MODEL = "demo-image-embed"


def content_length(headers: Mapping[str, str]) -> int:
    """The body's declared size: storage needs it up front (no chunked uploads)."""
    raw = headers.get("content-length")
    if raw is None or not raw.isdigit():
        raise InvalidRequestError("send a Content-Length header", field="content-length")
    return int(raw)


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


def create_app() -> FastAPI:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Gateway() as gw:  # one client (one connection pool) for the whole app
            app.state.gw = gw
            yield

    app = FastAPI(lifespan=lifespan)

    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        status = 400 if isinstance(exc, InvalidRequestError) else 502
        return JSONResponse({"error": str(exc)}, status_code=status)

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

    return app


def __getattr__(name: str) -> Any:
    """``examples.fastapi_backend:app`` for uvicorn, built on first access."""
    if name == "app":
        return create_app()
    raise AttributeError(name)

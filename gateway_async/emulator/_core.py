"""The emulator's shared context: settings, state, stores and counters used by both
listeners (the API and the storage endpoint), plus small request helpers for handlers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

from ._auth import Auth
from ._body import read_body
from ._db import Db
from ._embed import embed_file
from ._errors import ApiError
from ._faults import FaultInjector, Faults
from ._idempotency import Answer, Idempotency
from ._locks import KeyedLocks
from ._models import Catalogue
from ._multipart_state import MultipartStore
from ._ratelimit import RateLimit, TokenBuckets
from ._state import Clock, State
from ._stats import EmulatorStats
from ._vectors import VectorStore
from ._wire import JsonRefused, loads


@dataclass(frozen=True)
class Settings:
    """What the caller configured."""

    api_keys: tuple[str, ...]
    browser_tokens: tuple[str, ...]
    max_upload_size: int
    upload_ttl: float
    clock: Clock
    multipart_threshold: int | None = None  # None: a version-1 server (never answers parts)
    part_size: int = 64 * 1024**2
    idle_timeout: float = 60.0  # seconds a request's headers or body may stall


class Core:
    """Everything a handler needs, reachable as ``request.app[CORE]``."""

    def __init__(
        self,
        settings: Settings,
        *,
        root: Path,
        db: Db,
        catalogue: Catalogue,
        faults: Faults | None,
        rate_limit: RateLimit | None,
        initial_balance: Decimal,
    ) -> None:
        self.settings = settings
        self.clock = settings.clock
        self.stats = EmulatorStats()
        self.state = State(db, settings.clock, initial_balance)
        self.vectors = VectorStore(db, self.stats.index_sizes)
        self.catalogue = catalogue
        self.auth = Auth(settings.api_keys, settings.browser_tokens)
        self.faults = FaultInjector(faults)
        self.limiter = None if rate_limit is None else TokenBuckets(rate_limit, settings.clock)
        self.idempotency = Idempotency(self.state, self.stats, settings.clock)
        self.media_root = root / "media"
        for sub in ("objects", "uploads", "tmp"):
            (self.media_root / sub).mkdir(parents=True, exist_ok=True)
        self.multipart = MultipartStore(db, self.media_root / "parts")
        self.completing = KeyedLocks()  # one complete at a time per upload_id
        self.storage_url = ""
        self._embeddings: dict[str, list[float]] = {}
        self.recover()

    def recover(self) -> None:
        """Sweep what a killed process left behind: half-written files in ``tmp``, objects
        linked by a complete that never committed, and the part and PUT files of uploads
        that did complete (a complete removes them only after its commit)."""
        for path in (self.media_root / "tmp").iterdir():
            path.unlink(missing_ok=True)
        for path in (self.media_root / "objects").iterdir():
            if path.name not in self.state.media:
                path.unlink(missing_ok=True)
        for upload in self.state.uploads.values():
            if upload.media_ref is not None:
                self.upload_file(upload.upload_id).unlink(missing_ok=True)
                self.multipart.drop_parts(upload.upload_id)

    def media_file(self, media_ref: str) -> Path:
        """Where the bytes of a completed upload live."""
        return self.media_root / "objects" / media_ref

    def upload_file(self, upload_id: str) -> Path:
        """Where the last complete PUT of an upload lives until ``complete``."""
        return self.media_root / "uploads" / upload_id

    async def embed_media(self, media_ref: str) -> list[float]:
        """The (cached) image embedding of stored media, computed off the event loop."""
        if media_ref not in self._embeddings:
            vector = await asyncio.to_thread(embed_file, self.media_file(media_ref))
            self._embeddings[media_ref] = vector
        return self._embeddings[media_ref]


CORE = web.AppKey("core", Core)
CREDENTIAL = web.RequestKey("credential", str)


def credential(request: web.Request) -> str:
    """The authenticated caller of this request (set by the API middleware)."""
    return request[CREDENTIAL]


async def read_object(request: web.Request) -> tuple[bytes, dict[str, Any]]:
    """The raw body and its JSON object: 400 when it is not (strict) JSON or not an object,
    422 naming the field that holds a lone surrogate."""
    raw = await read_body(request, request.app[CORE].settings.idle_timeout)
    try:
        body = loads(raw)
    except JsonRefused as exc:
        raise ApiError(400 if exc.field is None else 422, str(exc), field=exc.field) from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, not {type(body).__name__}")
    return raw, body


async def idempotent_post(
    request: web.Request, work: Callable[[Core, dict[str, Any]], Awaitable[Answer]]
) -> web.Response:
    """Run ``work`` on the request's JSON object once per Idempotency-Key (a replay or a
    conflict is answered from the record instead)."""
    core = request.app[CORE]
    raw, body = await read_object(request)

    async def once() -> Answer:
        return await work(core, body)

    return await core.idempotency.handle(request, credential(request), raw, once)


def refuse_unknown(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """422 for the first field of ``body`` outside ``allowed``."""
    for name in body:
        if name not in allowed:
            raise ApiError(
                422, f"unknown field {name!r}; allowed fields: {', '.join(allowed)}", field=name
            )

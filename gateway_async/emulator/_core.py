"""The emulator's shared context: settings, state, stores and counters used by both
listeners (the API and the storage endpoint), plus small request helpers for handlers."""

from __future__ import annotations

import asyncio
import secrets
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
from ._state import Clock, State, Upload
from ._stats import EmulatorStats
from ._vectors import VectorStore
from ._wire import JsonRefused, loads


@dataclass(frozen=True)
class Settings:
    """What the caller configured. ``workspaces`` maps each workspace to its API keys, in
    order; browser tokens belong to the first workspace."""

    workspaces: tuple[tuple[str, tuple[str, ...]], ...]
    browser_tokens: tuple[str, ...]
    max_upload_size: int
    upload_ttl: float
    clock: Clock
    multipart_threshold: int | None = None  # None: a version-1 server (never answers parts)
    part_size: int = 64 * 1024**2
    idle_timeout: float = 60.0  # seconds a request's headers or body may stall

    @property
    def api_keys(self) -> tuple[str, ...]:
        """Every accepted API key, the first workspace's first."""
        return tuple(key for _, keys in self.workspaces for key in keys)


class Hub:
    """What every workspace shares: settings, counters, the catalogue, auth, faults, the
    rate limit, the media directory (files are named by random ids, so one directory serves
    all) and the storage signing secret; plus the workspaces themselves."""

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
        self.stats = EmulatorStats()
        self.catalogue = catalogue
        self.auth = Auth(settings.api_keys, settings.browser_tokens)
        self.faults = FaultInjector(faults)
        self.limiter = None if rate_limit is None else TokenBuckets(rate_limit, settings.clock)
        self.media_root = root / "media"
        for sub in ("objects", "uploads", "tmp", "parts"):
            (self.media_root / sub).mkdir(parents=True, exist_ok=True)
        self.secret = storage_secret(db)
        self.storage_url = ""
        self.embeddings: dict[str, list[float]] = {}  # by media_ref, unique across workspaces
        names = [name for name, _ in settings.workspaces]
        db.adopt_legacy(names[0])  # a data dir from before workspaces: the first one's
        self.workspaces = {
            name: Core(self, name, db.scoped(name), initial_balance) for name in names
        }
        self._owners = {
            key: self.workspaces[name] for name, keys in settings.workspaces for key in keys
        }
        self._owners.update(dict.fromkeys(settings.browser_tokens, self.default))
        self.recover()

    @property
    def default(self) -> Core:
        """The first workspace (the only one unless several were configured)."""
        return next(iter(self.workspaces.values()))

    def workspace_of(self, credential: str) -> Core:
        """The workspace an authenticated credential belongs to."""
        return self._owners[credential]

    def find_upload(self, upload_id: str) -> tuple[Core, Upload] | None:
        """The workspace holding ``upload_id`` and the upload (storage URLs carry no key)."""
        for core in self.workspaces.values():
            upload = core.state.uploads.get(upload_id)
            if upload is not None:
                return core, upload
        return None

    def recover(self) -> None:
        """Sweep what a killed process left behind: half-written files in ``tmp``, objects
        linked by a complete that never committed, and the part and PUT files of uploads
        that did complete (a complete removes them only after its commit)."""
        for path in (self.media_root / "tmp").iterdir():
            path.unlink(missing_ok=True)
        held = {ref for core in self.workspaces.values() for ref in core.state.media}
        for path in (self.media_root / "objects").iterdir():
            if path.name not in held:
                path.unlink(missing_ok=True)
        for core in self.workspaces.values():
            for upload in core.state.uploads.values():
                if upload.media_ref is not None:
                    core.upload_file(upload.upload_id).unlink(missing_ok=True)
                    core.multipart.drop_parts(upload.upload_id)


def storage_secret(db: Db) -> bytes:
    """The per-emulator key of pre-signed URLs, kept in the data dir across restarts."""
    meta = db.load("meta")
    if "secret" not in meta:
        meta["secret"] = {"hex": secrets.token_hex(32)}
        db.put("meta", "secret", meta["secret"])
    return bytes.fromhex(meta["secret"]["hex"])


class Core:
    """One workspace (contract "Workspaces"): its wallet, usage, uploads, media, vector
    index, idempotency store and multipart records, with the shared :class:`Hub` behind it.
    A handler reaches the caller's with :func:`core_of`; ``request.app[CORE]`` is the first
    workspace, which also answers for what every workspace shares."""

    def __init__(self, hub: Hub, name: str, db: Db, initial_balance: Decimal) -> None:
        self.hub = hub
        self.name = name
        self.state = State(db, hub.settings.clock, initial_balance)
        self.vectors = VectorStore(db, hub.stats.index_sizes)
        self.idempotency = Idempotency(self.state, hub.stats, hub.settings.clock)
        self.multipart = MultipartStore(db, hub.media_root / "parts")
        self.completing = KeyedLocks()  # one complete at a time per upload_id

    @property
    def settings(self) -> Settings:
        """Shared: ``hub.settings``."""
        return self.hub.settings

    @property
    def clock(self) -> Clock:
        """Shared: ``hub.settings.clock``."""
        return self.hub.settings.clock

    @property
    def stats(self) -> EmulatorStats:
        """Shared: ``hub.stats``."""
        return self.hub.stats

    @property
    def catalogue(self) -> Catalogue:
        """Shared: ``hub.catalogue``."""
        return self.hub.catalogue

    @property
    def auth(self) -> Auth:
        """Shared: ``hub.auth``."""
        return self.hub.auth

    @property
    def limiter(self) -> TokenBuckets | None:
        """Shared: ``hub.limiter``."""
        return self.hub.limiter

    @property
    def media_root(self) -> Path:
        """Shared: ``hub.media_root``."""
        return self.hub.media_root

    @property
    def storage_url(self) -> str:
        """Shared: ``hub.storage_url``."""
        return self.hub.storage_url

    @property
    def secret(self) -> bytes:
        """Shared: ``hub.secret``."""
        return self.hub.secret

    @property
    def faults(self) -> FaultInjector:
        """The shared fault injector (tests may replace it)."""
        return self.hub.faults

    @faults.setter
    def faults(self, injector: FaultInjector) -> None:
        self.hub.faults = injector

    def media_file(self, media_ref: str) -> Path:
        """Where the bytes of a completed upload live."""
        return self.media_root / "objects" / media_ref

    def upload_file(self, upload_id: str) -> Path:
        """Where the last complete PUT of an upload lives until ``complete``."""
        return self.media_root / "uploads" / upload_id

    async def embed_media(self, media_ref: str) -> list[float]:
        """The (cached) image embedding of stored media, computed off the event loop."""
        cache = self.hub.embeddings
        if media_ref not in cache:
            cache[media_ref] = await asyncio.to_thread(embed_file, self.media_file(media_ref))
        return cache[media_ref]


CORE = web.AppKey("core", Core)
CREDENTIAL = web.RequestKey("credential", str)


def credential(request: web.Request) -> str:
    """The authenticated caller of this request (set by the API middleware)."""
    return request[CREDENTIAL]


def core_of(request: web.Request) -> Core:
    """The workspace of this request's authenticated caller."""
    return request.app[CORE].hub.workspace_of(credential(request))


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
    core = core_of(request)
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

"""``Emulator``: start the Gateway and storage listeners on loopback, expose their URLs,
counters and a few test controls (faults, balance, where media bytes live)."""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from ._app import build_api_app, build_storage_app
from ._core import Core, Hub, Settings
from ._db import Db
from ._faults import Faults
from ._models import Catalogue
from ._ratelimit import RateLimit
from ._stats import EmulatorStats
from ._wire import exact_credits

if TYPE_CHECKING:
    from gateway_async import Gateway

DEFAULT_API_KEY = "gw_local_dev_key"
DEFAULT_WORKSPACE = "ws_emulator"
SHUTDOWN_GRACE = 1.0  # seconds a request in flight may take to finish once close() is called


class HasMediaRef(Protocol):
    """The SDK's ``MediaRef`` as the emulator sees it (it never imports client code)."""

    @property
    def media_ref(self) -> str: ...


def ref_string(media_ref: str | HasMediaRef) -> str:
    """A media_ref string, given as is or as the SDK's ``MediaRef``."""
    return media_ref if isinstance(media_ref, str) else media_ref.media_ref


class Emulator:
    """A local Gateway; use ``async with Emulator() as emu`` or ``start()``/``close()``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        storage_port: int = 0,
        api_keys: Iterable[str] = (DEFAULT_API_KEY,),
        browser_tokens: Iterable[str] = (),
        data_dir: Path | str | None = None,
        initial_balance: Decimal = Decimal("100.0000"),
        max_upload_size: int = 5 * 1024**3,
        upload_ttl: float = 900.0,
        faults: Faults | None = None,
        rate_limit: RateLimit | None = None,
        clock: Callable[[], float] = time.time,
        extra_models: Iterable[Mapping[str, Any]] = (),
        multipart_threshold: int | None = None,
        multipart_part_size: int = 64 * 1024**2,
        idle_timeout: float = 60.0,
        workspaces: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        """``multipart_threshold``: uploads of more bytes than this get parts of
        ``multipart_part_size`` (at least 5 MiB) instead of one URL; None: version 1 only.
        ``idle_timeout``: seconds a request's headers may take, or its body may stall.
        ``workspaces``: ``{"ws_a": ["key_a"], ...}``, each with its own wallet, usage,
        uploads, media, index and idempotency store; without it, ``api_keys`` share one
        workspace, ``ws_emulator``."""
        self.host, self._port, self._storage_port = host, port, storage_port
        self._settings = Settings(
            _workspaces(tuple(api_keys), workspaces),
            tuple(browser_tokens),
            max_upload_size,
            upload_ttl,
            clock,
            multipart_threshold,
            multipart_part_size,
            idle_timeout,
        )
        self._data_dir = None if data_dir is None else Path(data_dir)
        self._initial_balance = exact_credits(initial_balance, "initial_balance")
        self._faults = faults
        self._rate_limit = rate_limit
        self._catalogue = Catalogue(extra_models)
        self._hub: Hub | None = None
        self._db: Db | None = None
        self._temp: tempfile.TemporaryDirectory[str] | None = None
        self._runners: list[web.AppRunner] = []
        self.base_url = ""
        self.storage_url = ""

    @property
    def api_key(self) -> str:
        """The first configured API key (of the first workspace)."""
        return self._settings.api_keys[0]

    @property
    def hub(self) -> Hub:
        """The running emulator's shared state (RuntimeError before ``start()``)."""
        if self._hub is None:
            raise RuntimeError("the emulator is not running: call start() first")
        return self._hub

    @property
    def core(self) -> Core:
        """The first workspace (and, through it, the shared state)."""
        return self.hub.default

    def workspace(self, name: str) -> Core:
        """One workspace's stores, by name (KeyError if there is no such workspace)."""
        return self.hub.workspaces[name]

    @property
    def stats(self) -> EmulatorStats:
        """Live counters."""
        return self.core.stats

    async def start(self) -> None:
        """Open the state, bind both listeners and record their URLs."""
        if self._data_dir is None:
            self._temp = tempfile.TemporaryDirectory(prefix="gateway-emulator-")
            root, db_path = Path(self._temp.name), None
        else:
            self._data_dir.mkdir(parents=True, exist_ok=True)
            root, db_path = self._data_dir, self._data_dir / "state.sqlite3"
        self._db = Db(db_path)
        self._hub = hub = Hub(
            self._settings,
            root=root,
            db=self._db,
            catalogue=self._catalogue,
            faults=self._faults,
            rate_limit=self._rate_limit,
            initial_balance=self._initial_balance,
        )
        try:
            storage = build_storage_app(hub.default)
            self.storage_url = await self._serve(storage, self._storage_port)
            hub.storage_url = self.storage_url
            # The API decodes bodies itself (_body.read_body: 415 for unknown codings).
            api = build_api_app(hub.default)
            self.base_url = await self._serve(api, self._port, auto_decompress=False)
        except BaseException:
            await self.close()
            raise

    async def _serve(self, app: web.Application, port: int, **options: Any) -> str:
        # The keep-alive timeout also bounds how long a request's headers may take.
        # At close, a request still in a handler (a latency fault of 30 s, a hung upload)
        # gets SHUTDOWN_GRACE seconds to finish, then is cancelled: aiohttp waits 60.
        idle = self._settings.idle_timeout
        runner = web.AppRunner(
            app,
            access_log=None,
            keepalive_timeout=idle,
            shutdown_timeout=SHUTDOWN_GRACE,
            **options,
        )
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, self.host, port)
        await site.start()
        bound = runner.addresses[0][1]  # the real port when 0 was asked for
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{bound}"

    async def close(self) -> None:
        """Stop both listeners and release the state (idempotent)."""
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._temp is not None:
            self._temp.cleanup()
            self._temp = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def set_faults(self, faults: Faults | None) -> None:
        """Replace the fault configuration (the generator restarts from its seed)."""
        self.core.faults.configure(faults)

    def set_balance(self, balance: Decimal, workspace: str | None = None) -> None:
        """Set a workspace's wallet balance (the first workspace's by default); ValueError
        unless finite with at most 4 decimals."""
        core = self.core if workspace is None else self.workspace(workspace)
        core.state.set_balance(exact_credits(balance, "balance"))

    def media_path(self, media_ref: str | HasMediaRef) -> Path:
        """Where the bytes of a completed upload are stored (KeyError if unknown); takes
        the SDK's ``MediaRef`` as well as its string."""
        media_ref = ref_string(media_ref)
        if not any(media_ref in ws.state.media for ws in self.hub.workspaces.values()):
            raise KeyError(media_ref)
        return self.core.media_file(media_ref)

    def client(self, **kwargs: Any) -> Gateway:
        """A ``gateway_async.Gateway`` bound to this emulator, with its first API key unless
        ``api_key=`` names another (another workspace's, say)."""
        from gateway_async import Gateway

        kwargs.setdefault("api_key", self.api_key)
        return Gateway(base_url=self.base_url, **kwargs)


WORKSPACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _workspaces(
    api_keys: tuple[str, ...], workspaces: Mapping[str, Iterable[str]] | None
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The workspaces and their keys (ValueError naming what is wrong)."""
    if workspaces is None:
        if not api_keys:
            raise ValueError("Emulator needs at least one API key")
        return ((DEFAULT_WORKSPACE, api_keys),)
    if api_keys != (DEFAULT_API_KEY,):
        raise ValueError("give Emulator api_keys or workspaces, not both")
    named = tuple((name, tuple(keys)) for name, keys in workspaces.items())
    seen: set[str] = set()
    for name, keys in named or (("", ()),):
        if not WORKSPACE_NAME.fullmatch(name):
            raise ValueError(
                f"workspace name {name!r}: 1 to 64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        if not keys:
            raise ValueError(f"workspace {name!r} needs at least one API key")
        for key in keys:
            if key in seen:
                raise ValueError("an API key belongs to one workspace; one is listed twice")
            seen.add(key)
    return named

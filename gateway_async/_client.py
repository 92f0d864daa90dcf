"""``Gateway``: the async session manager that owns the connections and the resource namespaces."""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, Unpack

import aiohttp
import attrs
from yarl import URL

from ._config import (
    NOT_GIVEN,
    Credentials,
    Limits,
    NotGiven,
    Timeouts,
    call_timeouts,
    finite_seconds,
    parse_base_url,
)
from ._errors import ConfigurationError
from ._logging import register_secret, unregister_secret
from ._retry import RetryPolicy
from ._telemetry import EventHooks, Observers, new_telemetry
from ._transport import Transport
from .resources.billing import Billing
from .resources.marketplace import Marketplace
from .resources.runs import Runs

if TYPE_CHECKING:
    from ._upload.storage import Storage
    from .pipeline import Ingest, IngestOptions
    from .resources.media import Media

__all__ = ["Gateway"]


def _check_instance(name: str, value: object, kind: type, example: str) -> None:
    """An option that takes one of our classes gets one (or None), refused here: else the
    first call that reads it fails with a raw AttributeError."""
    if value is not None and not isinstance(value, kind):
        raise ConfigurationError(
            f"{name}: expected a {kind.__name__} or None, got {type(value).__name__} "
            f"{value!r:.40}; pass e.g. {name}={example}"
        )


class Gateway:
    """An async client of the Gateway API. Use it as ``async with Gateway(...) as gw:``.

    It owns one ``aiohttp.ClientSession`` (created lazily inside the running loop, closed by
    ``async with`` or ``aclose()``), unless you pass ``session=``, which it then never closes.
    One instance is safe to share between thousands of tasks of one event loop.

    With ``opentelemetry-api`` installed (extra ``[otel]``) it emits spans and metrics to the
    application's providers; ``telemetry=False`` turns that off. ``event_hooks={"request":
    [...], "response": [...]}`` calls sync or async callables on every HTTP attempt, with or
    without OpenTelemetry (see docs/observability.md).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        access_token: str | None = None,
        base_url: str | URL | None = None,
        timeout: float | Timeouts | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        retry: RetryPolicy | None = None,
        limits: Limits | None = None,
        session: aiohttp.ClientSession | None = None,
        allow_insecure_http: bool = False,
        upload_stall_timeout: float = 60.0,
        telemetry: bool = True,
        event_hooks: EventHooks | None = None,
        env: Mapping[str, str] | None = None,
        _tracer_provider: Any = None,
        _meter_provider: Any = None,
    ) -> None:
        env = os.environ if env is None else env
        stall_timeout = finite_seconds("upload_stall_timeout", upload_stall_timeout)
        self._credentials = Credentials.resolve(api_key, access_token, env)
        self.base_url = parse_base_url(base_url, allow_insecure_http=allow_insecure_http, env=env)
        _check_instance("retry", retry, RetryPolicy, "RetryPolicy(max_retries=5)")
        _check_instance("limits", limits, Limits, "Limits(max_connections=50)")
        policy = retry or RetryPolicy()
        if not isinstance(max_retries, NotGiven):
            if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
                raise ConfigurationError("max_retries must be a non-negative integer")
            policy = attrs.evolve(policy, max_retries=max_retries)
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise ConfigurationError("session must be an aiohttp.ClientSession")
        self.limits = limits or Limits()
        self._observers = Observers()
        observer = new_telemetry(
            enabled=telemetry,
            observers=self._observers,
            event_hooks=event_hooks,
            tracer_provider=_tracer_provider,
            meter_provider=_meter_provider,
        )
        self._transport = Transport(
            base_url=self.base_url,
            credentials=self._credentials,
            timeouts=call_timeouts(Timeouts(), timeout),
            retry=policy,
            limits=self.limits,
            session=session,
            telemetry=observer,
        )
        register_secret(self._credentials.secret)
        self._registered = True
        self.marketplace = Marketplace(self._transport)
        self.runs = Runs(self._transport, self.marketplace)
        self.billing = Billing(self._transport)
        self._stall_timeout = stall_timeout

    @functools.cached_property
    def media(self) -> Media:
        """Uploads. Built on first use: the upload machinery (its own session, file
        threads, the multipart journal's sqlite3) is imported only by clients that upload."""
        from .resources.media import Media

        return Media(self._transport, self._storage, self._observers)

    @functools.cached_property
    def _storage(self) -> Storage:
        from ._upload.storage import Storage

        storage = Storage(
            max_concurrent=self.limits.max_concurrent_uploads,
            connect_timeout=self._transport.timeouts.connect,
            stall_timeout=self._stall_timeout,
            deadlines=self._transport.deadlines,
            answer_timeout=self._transport.timeouts.attempt,
        )
        storage.telemetry = self._transport.telemetry
        return storage

    @property
    def timeouts(self) -> Timeouts:
        return self._transport.timeouts

    @property
    def retry(self) -> RetryPolicy:
        return self._transport.retry

    @property
    def observer_failures(self) -> Mapping[str, int]:
        """How often each kind of observer failed: ``"tracing"``, ``"metrics"``,
        ``"propagator"``, ``"request hook"``, ``"response hook"``, ``"on_event"``,
        ``"on_progress"``.

        Such failures never change a call's outcome; each kind is logged once (a warning on
        the ``gateway_async`` logger) and counted here.
        """
        return dict(self._observers.failures)

    def __repr__(self) -> str:
        return f"Gateway(base_url={str(self.base_url)!r}, auth={self._credentials.kind})"

    __str__ = __repr__

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self, *, timeout: float = 1.0) -> None:
        """Close the client: new calls are refused at once; calls in flight get up to
        ``timeout`` seconds to finish (a run answered meanwhile is returned), then fail with
        ``APIConnectionError`` saying the client was closed. Then the sessions this client
        owns are closed. Safe to call twice."""
        timeout = finite_seconds("timeout", timeout, allow_zero=True)
        await self._transport.aclose(timeout)
        storage = self.__dict__.get("_storage")  # never built: nothing to close
        if storage is not None:
            await storage.aclose()
        if self._registered:
            self._registered = False
            unregister_secret(self._credentials.secret)

    def ingest(
        self, sources: Iterable[Any] | AsyncIterable[Any], **options: Unpack[IngestOptions]
    ) -> Ingest:
        """Upload ``sources`` and run ``model`` on each (see ``gateway_async.pipeline``).

        ``async for item in gw.ingest(paths, model=..., scope=...)``; the returned ``Ingest``
        has ``.summary`` (counts, bytes, credits, duration) once iteration ended.
        """
        from .pipeline import ingest  # lazy: keeps `import gateway_async` light

        return ingest(self, sources, **options)

"""OpenTelemetry traces and metrics, W3C trace context on the wire, and event hooks.

The only module that imports ``opentelemetry`` (the API, extra ``[otel]``), and only when a
``Gateway`` is built with telemetry on, so ``import gateway_async`` stays light. Without the
package, and without event hooks, a client has no ``Telemetry`` at all: each call site pays
one ``is None`` check.

Cost: with the API installed but no SDK configured, every call site asks ``tracing()`` or
``active()`` (two module attribute reads) and takes the uninstrumented path, since the API's
no-op spans would still cost a context attach, a span object and a header copy per attempt:
+0.7% instructions per run, counted (benchmarks/RESULTS.md). The application configuring a
provider later is seen at the next call.

Observers are contained: every call into code the SDK does not own (the OpenTelemetry API
and SDK, span processors, propagators, metric readers, event hooks, an ingest's ``on_event``)
goes through one boundary, ``Observers``. Whatever such code does (raise, raise
``CancelledError``), the call's outcome is unchanged: the failure is logged once per kind,
counted (``Gateway.observer_failures``), and a paid result is returned.

Never recorded: the API key, the access token (headers are not recorded; hooks get them
redacted), a pre-signed URL's query (``url.full`` is built without it), and ``input``,
``params`` or ``output`` (only the model, mode, scope and ids are). Exception messages are
not recorded either (they may quote an input value): ``error.type`` is a class or a status.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType, ModuleType
from typing import Any, Final, TypeAlias, TypeVar

import attrs
from yarl import URL

from ._errors import ConfigurationError
from ._logging import logger
from ._version import __version__

__all__ = [
    "Attributes",
    "EventHooks",
    "Observers",
    "RequestInfo",
    "ResponseInfo",
    "Telemetry",
    "new_telemetry",
    "url_template",
]

R = TypeVar("R")
Attributes: TypeAlias = Mapping[str, str | int | float | bool]
Hook: TypeAlias = Callable[[Any], Any]
EventHooks: TypeAlias = Mapping[str, Iterable[Hook]]

_SCOPE: Final = "gateway_async"
_SENSITIVE: Final = ("auth", "key", "token", "secret", "signature", "credential", "cookie")
_PUBLIC_HEADERS: Final = frozenset({"idempotency-key"})
_REDACTED: Final = "[redacted]"

# Paths with a parameter: the prefix, and the template a span or metric names instead.
_TEMPLATES: Final = (
    ("/api/marketplace/models/", "/api/marketplace/models/{slug}"),
    ("/api/media/upload/", "/api/media/upload/{upload_id}"),
    ("/api/runs/", "/api/runs/{run_id}"),
)
_STATIC_UPLOAD_PATHS: Final = frozenset({"init", "complete", "parts"})


def url_template(path: str) -> str:
    """The low-cardinality ``url.template`` of an API path (ids and slugs become names)."""
    for prefix, template in _TEMPLATES:
        if path.startswith(prefix):
            rest = path[len(prefix) :]
            if not rest or (template.endswith("{upload_id}") and rest in _STATIC_UPLOAD_PATHS):
                return path
            return template
    return path


def _redact(headers: Mapping[str, str]) -> Mapping[str, str]:
    """A read-only copy of ``headers`` with every credential-like value replaced."""
    safe = {}
    for name, value in headers.items():
        lower = name.lower()
        hidden = lower not in _PUBLIC_HEADERS and any(word in lower for word in _SENSITIVE)
        safe[name] = _REDACTED if hidden else value
    return MappingProxyType(safe)


def _public_url(url: URL) -> str:
    """``url`` without user info, query or fragment: a pre-signed URL's signature is its query."""
    return str(url.with_user(None).with_query(None).with_fragment(None))


@attrs.frozen(kw_only=True)
class RequestInfo:
    """What a ``request`` event hook receives: one HTTP attempt about to be sent.

    ``url`` has no query string and ``headers`` have credentials redacted, so a hook may log
    them as they are. ``attempt`` counts from 1.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    attempt: int


@attrs.frozen(kw_only=True)
class ResponseInfo(RequestInfo):
    """What a ``response`` event hook receives: the attempt above, answered.

    ``elapsed`` is in seconds; ``request_id`` is the Gateway's ``X-Request-Id`` (None for a
    storage PUT or an answer without one).
    """

    status: int
    elapsed: float
    request_id: str | None = None


class Observers:
    """The one boundary between a call and the code that watches it.

    Tracing, metrics, propagators, event hooks and callbacks are called through ``call``
    (sync) or ``wait`` (sync or async): what they raise, ``CancelledError`` included, is
    logged once per kind, counted in ``failures``, and goes no further, so a call that was
    executed (and charged) returns its result whatever its observers did. A real
    cancellation of the calling task, pending while an async observer was awaited, is
    not the observer's and goes on.
    """

    __slots__ = ("_logged", "failures")

    def __init__(self) -> None:
        self.failures: Counter[str] = Counter()
        self._logged: set[str] = set()

    def call(self, kind: str, observer: Callable[..., R], *args: Any) -> R | None:
        """``observer(*args)``, or None if it raised (a sync call cannot be cancelled)."""
        try:
            return observer(*args)
        except (Exception, asyncio.CancelledError) as exc:
            self.failed(kind, exc, observer)
            return None

    async def wait(self, kind: str, observer: Callable[..., Any], *args: Any) -> None:
        """``observer(*args)``, awaited if it returns an awaitable; contained as ``call``."""
        try:
            result = observer(*args)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the call itself is being cancelled (or timed out): not the observer
            self.failed(kind, exc, observer)
        except Exception as exc:
            self.failed(kind, exc, observer)

    def failed(self, kind: str, error: BaseException, observer: object = None) -> None:
        """Count a failure of ``kind``; log the first one of each kind (a warning)."""
        self.failures[kind] += 1
        if kind in self._logged:
            return
        self._logged.add(kind)
        name = getattr(observer, "__qualname__", None) or type(observer).__name__
        logger.warning(
            "%s (%s) raised %s; the call goes on (logged once per kind, counted in "
            "Gateway.observer_failures)",
            kind,
            name,
            type(error).__name__,
        )


def _hooks(event_hooks: EventHooks | None) -> tuple[tuple[Hook, ...], tuple[Hook, ...]]:
    """Validate ``event_hooks`` into (request hooks, response hooks)."""
    if event_hooks is None:
        return (), ()
    if not isinstance(event_hooks, Mapping):
        raise ConfigurationError(
            'event_hooks: pass a mapping like {"request": [fn], "response": [fn]}'
        )
    unknown = set(event_hooks) - {"request", "response"}
    if unknown:
        raise ConfigurationError(
            f"event_hooks: unknown event {sorted(unknown)[0]!r}; use 'request' or 'response'"
        )
    found: dict[str, tuple[Hook, ...]] = {}
    for event in ("request", "response"):
        listed = event_hooks.get(event, ())
        if callable(listed) or isinstance(listed, str | bytes) or not isinstance(listed, Iterable):
            raise ConfigurationError(
                f"event_hooks[{event!r}]: expected a list of callables, got "
                f"{type(listed).__name__}; pass {{{event!r}: [fn, ...]}}"
            )
        hooks = tuple(listed)
        if not all(callable(hook) for hook in hooks):
            raise ConfigurationError(f"event_hooks[{event!r}]: every hook must be callable")
        found[event] = hooks
    return found["request"], found["response"]


def _load_otel() -> ModuleType | None:
    """The ``opentelemetry.trace`` module, or None when the ``otel`` extra is absent."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace


class _Otel:
    """The tracer and the five instruments of one client (from its providers)."""

    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        from opentelemetry import context, metrics, trace
        from opentelemetry.metrics import _internal as metrics_internal

        self.trace, self.context = trace, context
        self.explicit = tracer_provider is not None or meter_provider is not None
        # Resolve the global providers once, so one named by OTEL_PYTHON_* env vars loads.
        tracer_provider = tracer_provider or trace.get_tracer_provider()
        meter_provider = meter_provider or metrics.get_meter_provider()
        # The API's own globals, read on every call; if a future API renames them, act as
        # if a provider were set (correct, only slower).
        self.live = self.explicit or not (
            hasattr(trace, "_TRACER_PROVIDER") and hasattr(metrics_internal, "_METER_PROVIDER")
        )
        self.metrics_globals = metrics_internal
        self.tracer = tracer_provider.get_tracer(_SCOPE, __version__)
        meter = meter_provider.get_meter(_SCOPE, __version__)
        self.duration = meter.create_histogram(
            "gateway.client.request.duration", unit="s", description="HTTP attempt duration"
        )
        self.runs = meter.create_counter(
            "gateway.client.runs", unit="{run}", description="Finished runs"
        )
        self.credits = meter.create_counter(
            "gateway.client.credits", unit="{credit}", description="Credits charged for runs"
        )
        self.upload_bytes = meter.create_counter(
            "gateway.client.upload.bytes", unit="By", description="Bytes of completed uploads"
        )
        self.retries = meter.create_counter(
            "gateway.client.retries", unit="{retry}", description="Retried attempts"
        )

    def inject(self, headers: dict[str, str], span: Any) -> None:
        """Add ``traceparent`` (and ``tracestate``) naming ``span`` through the API's
        configured propagator (imported on first use: it loads entry points, ~2 ms)."""
        from opentelemetry import propagate

        propagate.inject(headers, context=self.trace.set_span_in_context(span))


def new_telemetry(
    *,
    enabled: bool,
    observers: Observers,
    event_hooks: EventHooks | None = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
) -> Telemetry | None:
    """The client's telemetry, or None when there is nothing to do (no OTel, no hooks)."""
    if not isinstance(enabled, bool):
        raise ConfigurationError("telemetry: pass True or False")
    request_hooks, response_hooks = _hooks(event_hooks)
    otel = None
    if enabled and _load_otel() is not None:
        otel = _Otel(tracer_provider, meter_provider)
    if otel is None and not request_hooks and not response_hooks:
        return None
    return Telemetry(otel, request_hooks, response_hooks, observers)


def _error_type(error: BaseException, status: int | None, timed_out: bool) -> str:
    """A low-cardinality ``error.type``: the status code, ``timeout``, or the class name."""
    if status is not None:
        return str(status)
    if timed_out or isinstance(error, TimeoutError):
        return "timeout"
    return type(error).__name__


def _unwrap(exc: BaseException) -> BaseException:
    """The SDK error inside a transport-internal wrapper (an exception with ``.error``)."""
    inner = getattr(exc, "error", None)
    return inner if isinstance(inner, BaseException) else exc


def retry_reason(error: BaseException) -> str:
    """``gateway.retry.reason``: the status code, ``timeout`` or ``connection``."""
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        return str(status)
    return "timeout" if isinstance(error, TimeoutError) else "connection"


class Telemetry:
    """One client's spans, metrics and event hooks; see the module docstring for the cost."""

    __slots__ = ("_guard", "_hooked", "_otel", "_request_hooks", "_response_hooks")

    def __init__(
        self,
        otel: _Otel | None,
        request_hooks: tuple[Hook, ...],
        response_hooks: tuple[Hook, ...],
        observers: Observers,
    ) -> None:
        self._otel = otel
        self._request_hooks = request_hooks
        self._response_hooks = response_hooks
        self._hooked = bool(request_hooks or response_hooks)
        self._guard = observers

    def tracing(self) -> bool:
        """Whether spans and metrics go anywhere: explicit providers, or global ones set.

        Asked on every call, so it reads the API's module globals rather than calling
        ``get_tracer_provider()`` (which consults ``os.environ`` each time), inline. A global
        provider is set once per process and never unset, so the first True is kept.
        """
        otel = self._otel
        if otel is None:
            return False
        if not otel.live:
            otel.live = (
                otel.trace._TRACER_PROVIDER is not None
                or otel.metrics_globals._METER_PROVIDER is not None
            )
        return otel.live

    def active(self) -> bool:
        """Whether an HTTP attempt needs observing (spans, metrics or hooks)."""
        return self._hooked or self.tracing()

    # -- operations ------------------------------------------------------------------------

    async def traced(
        self,
        name: str,
        call: Awaitable[R],
        attributes: Attributes | None = None,
        outcome: Callable[[R], Attributes] | None = None,
        ending: Callable[[], Attributes] | None = None,
    ) -> R:
        """Await ``call`` inside the INTERNAL span ``name`` (the current span meanwhile).

        ``outcome`` describes a result, ``ending`` the state at the end whatever happened;
        their attributes go on the span, and the run and upload ones into the metrics.
        ``call`` is awaited whatever the tracer does: a span that cannot be started leaves
        the call untraced, one that cannot be ended leaves its result intact.
        """
        otel = self._otel
        assert otel is not None
        opened = self._guard.call("tracing", _open, otel, name, attributes)
        if opened is None:
            return await call
        span, token = opened
        try:
            result = await call
        except BaseException as exc:
            kind = _error_type(exc, getattr(exc, "status_code", None), False)
            self._guard.call("tracing", _fail, otel, span, kind)
            raise
        else:
            if outcome is not None:
                self._guard.call("tracing", self._describe, name, span, outcome, result)
            return result
        finally:
            self._guard.call("tracing", _close, otel, span, token, ending)

    def _describe(
        self, name: str, span: Any, outcome: Callable[[R], Attributes], result: R
    ) -> None:
        described = outcome(result)
        span.set_attributes(described)
        self._guard.call("metrics", self._count, name, described)

    def linked_root(self, name: str, attributes: Attributes) -> Any:
        """Start a span that begins a trace of its own, linked to the current span (None if
        the tracer fails: the work goes on untraced).

        A long ingest traced as one tree grows for as long as it runs (a worker's trace
        never ends); its items' or batches' traces, linked to the ingest, stay bounded.
        """
        otel = self._otel
        assert otel is not None
        return self._guard.call("tracing", _linked_root, otel, name, attributes)

    def enter(self, span: Any) -> object:
        """Make ``span`` current in this task; pass the token to ``leave``."""
        otel = self._otel
        assert otel is not None
        if span is None:
            return None
        return self._guard.call("tracing", _attach, otel, _in_context(otel, span))

    def leave(self, token: object) -> None:
        otel = self._otel
        assert otel is not None
        if token is not None:
            self._guard.call("tracing", otel.context.detach, token)

    def end(self, span: Any) -> None:
        """End ``span`` (one ``linked_root`` gave), whatever the span processors do."""
        if span is not None:
            self._guard.call("tracing", span.end)

    async def traced_iter(self, name: str, items: AsyncIterator[R]) -> AsyncIterator[R]:
        """Yield from ``items`` inside the INTERNAL span ``name``, current only while a page
        is fetched: a context attached across a ``yield`` would leak into the caller's code.
        """
        otel, guard = self._otel, self._guard
        assert otel is not None
        span = guard.call("tracing", otel.tracer.start_span, name)
        inside = None if span is None else guard.call("tracing", _in_context, otel, span)
        try:
            while True:
                token = None if inside is None else guard.call("tracing", _attach, otel, inside)
                try:
                    item = await anext(items)
                except StopAsyncIteration:
                    return
                finally:
                    if token is not None:
                        guard.call("tracing", otel.context.detach, token)
                yield item
        except Exception as exc:
            if span is not None:
                kind = _error_type(exc, getattr(exc, "status_code", None), False)
                guard.call("tracing", _fail, otel, span, kind)
            raise
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()
            if span is not None:
                guard.call("tracing", span.end)

    def _count(self, name: str, described: Attributes) -> None:
        """The metrics an operation's outcome feeds (runs, credits, uploaded bytes)."""
        otel = self._otel
        assert otel is not None
        if name == "gateway.runs.create":
            model = described.get("gateway.model", "")
            otel.runs.add(
                1, {"gateway.model": model, "gateway.run.status": described["gateway.run.status"]}
            )
            otel.credits.add(float(described["gateway.credits"]), {"gateway.model": model})
        elif name == "gateway.media.upload":
            otel.upload_bytes.add(int(described["gateway.upload.bytes"]))

    def retried(self, error: BaseException, delay: float) -> None:
        """Count a retry, and note it (reason, delay) on the current operation span."""
        otel = self._otel
        if otel is None or not self.tracing():
            return
        reason = retry_reason(error)
        self._guard.call("metrics", otel.retries.add, 1, {"gateway.retry.reason": reason})
        self._guard.call("tracing", _note_retry, otel, reason, delay)

    # -- HTTP attempts ---------------------------------------------------------------------

    async def attempt(
        self,
        call: Callable[[Mapping[str, str]], Awaitable[R]],
        answer: Callable[[R], tuple[int, str | None]],
        *,
        method: str,
        url: URL,
        template: str | None,
        resend: int,
        headers: Mapping[str, str],
        overdue: Callable[[], bool],
    ) -> R:
        """Send one HTTP attempt, ``call(headers)``, inside a CLIENT span, timed, with hooks.

        ``template`` is set for API calls: they carry ``traceparent`` naming this span.
        A storage PUT (``template`` None) never does, and its ``url.full`` has no query.
        ``answer`` reads (status, request id) from the result; ``overdue`` says whether a
        cancellation was the client's own timeout.
        """
        otel = self._otel if self.tracing() else None
        guard = self._guard
        span = None
        if otel is not None:
            span = guard.call("tracing", _client_span, otel, method, url, template, resend)
            if span is not None and template is not None:
                headers = guard.call("propagator", _injected, otel, headers, span) or headers
        info = None
        if self._hooked:
            info = RequestInfo(
                method=method, url=_public_url(url), headers=_redact(headers), attempt=resend + 1
            )
            await self._fire("request hook", self._request_hooks, info)
        started = time.perf_counter()
        status: int | None = None
        try:
            result = await call(headers)
        except BaseException as exc:
            error = _unwrap(exc)
            status = getattr(error, "status_code", None)
            rid = getattr(error, "request_id", None)
            if otel is not None and span is not None:
                guard.call("tracing", _fail, otel, span, _error_type(error, status, overdue()))
            raise
        else:
            status, rid = answer(result)
            if otel is not None and span is not None and status >= 400:
                guard.call("tracing", _fail, otel, span, str(status))
            return result
        finally:
            elapsed = time.perf_counter() - started
            if otel is not None and span is not None:
                guard.call("tracing", _end_attempt, otel, span, status, rid)
                labels = _attempt_labels(method, template, status)
                guard.call("metrics", otel.duration.record, elapsed, labels)
            if info is not None and status is not None:
                answered = ResponseInfo(
                    **attrs.asdict(info, recurse=False),
                    status=status,
                    elapsed=elapsed,
                    request_id=rid,
                )
                await self._fire("response hook", self._response_hooks, answered)

    async def _fire(self, kind: str, hooks: tuple[Hook, ...], info: RequestInfo) -> None:
        """Call each hook (awaiting an async one), each contained by the boundary."""
        for hook in hooks:
            await self._guard.wait(kind, hook, info)


def _open(otel: _Otel, name: str, attributes: Attributes | None) -> tuple[Any, Any]:
    """Start the INTERNAL span ``name`` and make it current: (span, context token)."""
    span = otel.tracer.start_span(name, attributes=attributes)
    try:
        return span, _attach(otel, _in_context(otel, span))
    except BaseException:
        span.end()  # started but never current: end it here, or it leaks
        raise


def _close(otel: _Otel, span: Any, token: Any, ending: Callable[[], Attributes] | None) -> None:
    """Detach the span's context, add the ``ending`` attributes, end the span."""
    try:
        otel.context.detach(token)
        if ending is not None:
            span.set_attributes(ending())
    finally:
        span.end()


def _linked_root(otel: _Otel, name: str, attributes: Attributes) -> Any:
    current = otel.trace.get_current_span().get_span_context()
    links = [otel.trace.Link(current)] if current.is_valid else []
    return otel.tracer.start_span(
        name, context=otel.context.Context(), attributes=attributes, links=links
    )


def _in_context(otel: _Otel, span: Any) -> Any:
    return otel.trace.set_span_in_context(span)


def _attach(otel: _Otel, context: Any) -> Any:
    return otel.context.attach(context)


def _injected(otel: _Otel, headers: Mapping[str, str], span: Any) -> dict[str, str]:
    """A copy of ``headers`` with the trace context naming ``span`` (the original is left
    as it was if the propagator fails half-way)."""
    copy = dict(headers)
    otel.inject(copy, span)
    return copy


def _note_retry(otel: _Otel, reason: str, delay: float) -> None:
    otel.trace.get_current_span().add_event(
        "gateway.retry", {"gateway.retry.reason": reason, "gateway.retry.delay": delay}
    )


def _end_attempt(otel: _Otel, span: Any, status: int | None, request_id: str | None) -> None:
    """End an attempt's span; name its request id on the operation span too."""
    try:
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if request_id:
            span.set_attribute("gateway.request_id", request_id)
            otel.trace.get_current_span().set_attribute("gateway.request_id", request_id)
    finally:
        span.end()


def _attempt_labels(method: str, template: str | None, status: int | None) -> Attributes:
    """The duration metric's attributes of one attempt."""
    labels: dict[str, str | int] = {"http.request.method": method}
    if template is not None:
        labels["url.template"] = template
    if status is not None:
        labels["http.response.status_code"] = status
    return labels


def _client_span(otel: _Otel, method: str, url: URL, template: str | None, resend: int) -> Any:
    """A started CLIENT span for one attempt, following the HTTP client conventions."""
    attributes: dict[str, str | int] = {"http.request.method": method}
    if url.host:
        attributes["server.address"] = url.host
    if url.port is not None:
        attributes["server.port"] = url.port
    if template is not None:
        attributes["url.template"] = template
    else:
        attributes["url.full"] = _public_url(url)
    if resend:
        attributes["http.request.resend_count"] = resend
    name = f"{method} {template}" if template is not None else method
    kind = otel.trace.SpanKind.CLIENT
    return otel.tracer.start_span(name, kind=kind, attributes=attributes)


def _fail(otel: _Otel, span: Any, error_type: str) -> None:
    """Mark a span failed by ``error.type`` alone: no message, which may quote an input."""
    span.set_attribute("error.type", error_type)
    span.set_status(otel.trace.Status(otel.trace.StatusCode.ERROR))

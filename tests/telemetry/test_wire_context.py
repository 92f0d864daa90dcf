"""Trace context on the wire, as the emulator sees it: on every API request, never on a PUT."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from opentelemetry import context, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from gateway_async.emulator import Emulator, _emulator
from tests.conftest import FakeServer, reply
from tests.core.test_transport import RUN
from tests.telemetry.conftest import Otel

Seen = list[tuple[str, str, dict[str, str]]]  # (listener, "METHOD /path", trace headers)


def recording(seen: Seen, listener: str, build: Callable[[Any], web.Application]) -> Any:
    """An app builder adding a middleware that notes each request's trace headers."""

    @web.middleware
    async def note(request: web.Request, handler: Any) -> web.StreamResponse:
        found = {k.lower(): v for k, v in request.headers.items() if k.lower().startswith("trace")}
        seen.append((listener, f"{request.method} {request.path}", found))
        return await handler(request)

    def build_recorded(core: Any) -> web.Application:
        app = build(core)
        app.middlewares.insert(0, note)
        return app

    return build_recorded


async def test_the_emulator_sees_traceparent_on_api_requests_only(
    monkeypatch: pytest.MonkeyPatch, otel: Otel
) -> None:
    seen: Seen = []
    monkeypatch.setattr(_emulator, "build_api_app", recording(seen, "api", _emulator.build_api_app))
    monkeypatch.setattr(
        _emulator, "build_storage_app", recording(seen, "storage", _emulator.build_storage_app)
    )
    async with Emulator() as emu, otel.client(emu.base_url, api_key=emu.api_key) as gw:
        media = await gw.media.upload(b"\x89PNG not really", filename="a.png")
        await gw.runs.create(model="demo-echo", input={"image": media})

    api = [(route, headers) for listener, route, headers in seen if listener == "api"]
    storage = [(route, headers) for listener, route, headers in seen if listener == "storage"]
    assert [route for route, _ in api] == [
        "POST /api/media/upload/init",
        "POST /api/media/upload/complete",
        "POST /api/runs",
    ]
    assert [route.split()[0] for route, _ in storage] == ["PUT"]
    assert storage[0][1] == {}
    attempts = {s.name: s for s in otel.spans() if s.kind is trace.SpanKind.CLIENT}
    for route, headers in api:
        span_id = int(headers["traceparent"].split("-")[2], 16)
        assert span_id == attempts[route].context.span_id


async def test_tracestate_and_the_callers_trace_are_carried(server: FakeServer, otel: Otel) -> None:
    """A backend awaiting a run inside its own (remote-parented) request span."""
    server.on("POST", "/api/runs", reply(200, RUN))
    parent = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "v1")]),
    )
    token = context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
    try:
        async with otel.client(server.url) as gw:
            await gw.runs.create(model="demo-echo", input={"x": 1})
    finally:
        context.detach(token)
    run = otel.one("gateway.runs.create")
    assert run.parent is not None
    assert run.parent.span_id == parent.span_id
    headers = server.seen[0].headers
    assert headers["traceparent"].split("-")[1] == f"{parent.trace_id:032x}"
    assert headers["tracestate"] == "vendor=v1"

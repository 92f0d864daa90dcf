"""Regression tests of issue 21: observers are contained at one boundary.

A span processor raising in ``on_start`` or ``on_end``, a propagator whose ``inject``
raises, an event hook raising (``CancelledError`` too) and an ``on_event`` callback raising
never change a call's outcome: a paid run is returned, an ingest ends with every item, and
the failure is logged once per kind and counted in ``Gateway.observer_failures``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from gateway_async import Gateway, RequestInfo, Run
from gateway_async.emulator import Emulator
from gateway_async.pipeline import IngestEvent
from tests.telemetry.conftest import Otel, some_files

MODEL, SCOPE = "demo-image-embed", "test"
GUARD = 20.0  # seconds: a hang fails the test instead of the suite


class Broken(Exception):
    """What a broken observer raises."""


class RaisingProcessor(SpanProcessor):
    """A span processor that raises in ``on_start`` or ``on_end`` for spans named ``name``
    (any span when ``name`` is None)."""

    def __init__(self, *, start: bool = False, end: bool = False, name: str | None = None):
        self.start, self.end, self.name = start, end, name

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self.start and self.name in (None, span.name):
            raise Broken("on_start")

    def on_end(self, span: ReadableSpan) -> None:
        if self.end and self.name in (None, span.name):
            raise Broken("on_end")


class RaisingPropagator(TextMapPropagator):
    def extract(self, carrier: Any, context: Context | None = None, getter: Any = None) -> Context:
        return Context()

    def inject(self, carrier: Any, context: Context | None = None, setter: Any = None) -> None:
        carrier["traceparent"] = "half-written"  # a failure half-way must not reach the wire
        raise Broken("inject")

    @property
    def fields(self) -> set[str]:
        return {"traceparent"}


@pytest.fixture
def raising_propagator() -> Iterator[None]:
    before = propagate.get_global_textmap()
    propagate.set_global_textmap(RaisingPropagator())
    try:
        yield
    finally:
        propagate.set_global_textmap(before)


def client(otel: Otel, emu: Emulator, **kwargs: Any) -> Gateway:
    return otel.client(emu.base_url, api_key=emu.api_key, **kwargs)


async def one_run(gw: Gateway) -> Run:
    return await gw.runs.create(model="demo-echo", input={"text": "hi"})


def warned(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# -- defect 2: a span processor raising in on_start for the gateway.ingest span -----------


async def test_an_ingest_whose_span_cannot_start_runs_untraced_to_its_end(
    tmp_path: Path, gateway_emulator: Emulator, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    otel.tracer_provider.add_span_processor(RaisingProcessor(start=True, name="gateway.ingest"))
    async with client(otel, gateway_emulator) as gw:
        ingest = gw.ingest(some_files(tmp_path, 5), model=MODEL, scope=SCOPE)
        async with asyncio.timeout(GUARD):
            items = [item async for item in ingest]
        failures = gw.observer_failures
    assert sorted(item.index for item in items) == list(range(5))
    assert all(item.ok for item in items)
    assert failures == {"tracing": 1}
    assert len(warned(caplog)) == 1
    assert "tracing" in warned(caplog)[0]
    assert gateway_emulator.stats.executions == 5


@pytest.mark.parametrize(
    ("trace", "name"),
    [("item", "gateway.ingest.item"), ("batch", "gateway.ingest.batch"), ("ingest", None)],
)
@pytest.mark.parametrize("where", ["start", "end"])
async def test_an_ingest_whose_item_spans_fail_still_ends_with_every_item(
    tmp_path: Path, gateway_emulator: Emulator, otel: Otel, trace: str, name: str, where: str
) -> None:
    """The seam with per-item traces: the item (or batch) spans' processors fail too."""
    broken = RaisingProcessor(start=where == "start", end=where == "end", name=name)
    otel.tracer_provider.add_span_processor(broken)
    async with client(otel, gateway_emulator) as gw:
        ingest = gw.ingest(some_files(tmp_path, 4), model=MODEL, scope=SCOPE, trace=trace)
        async with asyncio.timeout(GUARD):
            items = [item async for item in ingest]
        failures = gw.observer_failures
    assert sorted(item.index for item in items) == [0, 1, 2, 3]
    assert all(item.ok for item in items)
    assert failures["tracing"] >= 1
    assert gateway_emulator.stats.executions == 4


# -- defect 3: telemetry failures never lose a paid result --------------------------------


async def test_a_processor_raising_on_end_still_returns_the_paid_run(
    gateway_emulator: Emulator, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    otel.tracer_provider.add_span_processor(RaisingProcessor(end=True))
    async with client(otel, gateway_emulator) as gw:
        runs = [await one_run(gw) for _ in range(3)]
        failures = gw.observer_failures
    assert all(isinstance(run, Run) and run.succeeded for run in runs)
    assert gateway_emulator.stats.executions == 3  # each paid once, each returned
    assert failures["tracing"] >= 3
    assert [m for m in warned(caplog) if "tracing" in m] == [warned(caplog)[0]]  # once


async def test_a_processor_raising_on_start_leaves_every_call_working(
    gateway_emulator: Emulator, otel: Otel
) -> None:
    otel.tracer_provider.add_span_processor(RaisingProcessor(start=True))
    async with client(otel, gateway_emulator) as gw:
        run = await one_run(gw)
        wallet = await gw.billing.wallet()
        media = await gw.media.upload(b"hello")
        models = [m async for m in gw.marketplace.list_models()]
    assert run.succeeded
    assert wallet.balance >= 0
    assert media.size == 5
    assert models


@pytest.mark.usefixtures("raising_propagator")
async def test_a_propagator_whose_inject_raises_leaves_every_call_working(
    gateway_emulator: Emulator, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[RequestInfo] = []
    async with client(otel, gateway_emulator, event_hooks={"request": [seen.append]}) as gw:
        runs = [await one_run(gw) for _ in range(3)]
        failures = gw.observer_failures
    assert all(run.succeeded for run in runs)
    assert failures == {"propagator": 3}
    assert len(warned(caplog)) == 1
    assert all("traceparent" not in info.headers for info in seen)  # nothing half-written


# -- defect 6: hooks raising CancelledError; one rule for on_event ------------------------


async def test_a_hook_raising_cancelled_error_does_not_cancel_the_call(
    gateway_emulator: Emulator, otel: Otel
) -> None:
    def sync_hook(_: object) -> None:
        raise asyncio.CancelledError

    async def async_hook(_: object) -> None:
        raise asyncio.CancelledError

    hooks = {"request": [sync_hook], "response": [async_hook]}
    async with gateway_emulator.client(event_hooks=hooks) as gw:
        run = await one_run(gw)
        failures = gw.observer_failures
    assert run.succeeded
    assert failures == {"request hook": 1, "response hook": 1}
    assert gateway_emulator.stats.executions == 1


async def test_a_real_cancel_while_an_async_hook_waits_still_cancels_the_call(
    gateway_emulator: Emulator,
) -> None:
    """The seam: the boundary swallows an observer's own CancelledError, never the task's."""
    entered = asyncio.Event()

    async def slow_hook(_: object) -> None:
        entered.set()
        await asyncio.Event().wait()

    async with gateway_emulator.client(event_hooks={"request": [slow_hook]}) as gw:
        call = asyncio.create_task(one_run(gw))
        await entered.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert gw.observer_failures == {}


@pytest.mark.parametrize("kind", ["read", "uploaded", "succeeded"])
async def test_an_on_event_callback_raising_changes_nothing_whatever_the_event(
    tmp_path: Path, gateway_emulator: Emulator, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    def on_event(event: IngestEvent) -> None:
        if event.kind == kind:
            raise Broken(kind)

    async with gateway_emulator.client() as gw:
        ingest = gw.ingest(some_files(tmp_path, 4), model=MODEL, scope=SCOPE, on_event=on_event)
        async with asyncio.timeout(GUARD):
            items = [item async for item in ingest]
        failures = gw.observer_failures
    assert sorted(item.index for item in items) == [0, 1, 2, 3]
    assert all(item.ok for item in items)
    assert ingest.summary.stopped is None
    assert failures == {"on_event": 4}
    assert len(warned(caplog)) == 1
    assert "on_event" in warned(caplog)[0]


async def test_an_on_event_callback_raising_cancelled_error_changes_nothing(
    tmp_path: Path, gateway_emulator: Emulator
) -> None:
    def on_event(_: IngestEvent) -> None:
        raise asyncio.CancelledError

    async with gateway_emulator.client() as gw:
        ingest = gw.ingest(some_files(tmp_path, 3), model=MODEL, scope=SCOPE, on_event=on_event)
        async with asyncio.timeout(GUARD):
            items = [item async for item in ingest]
    assert sorted(item.index for item in items) == [0, 1, 2]
    assert all(item.ok for item in items)

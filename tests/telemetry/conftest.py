"""Fixtures of the telemetry tests: in-memory OpenTelemetry providers, passed to each client.

The providers are passed explicitly (``Gateway(_tracer_provider=..., _meter_provider=...)``)
rather than set globally: OTel's global providers can be set once per process, and every
other test of the suite should keep running without an SDK.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway_async import Gateway, testing
from tests.conftest import TEST_KEY, FakeServer, Handler, no_wait_policy

gateway_emulator = testing.gateway_emulator  # the shared fixture, under its own name

MEDIA = {"media_ref": "media://med_1", "size": 5, "content_type": "application/octet-stream"}
SIGNATURE = "X-Amz-Signature=sig0123456789abcdef"


class Otel:
    """An in-memory tracer and meter provider, and readers of what they recorded."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)

    def client(self, base_url: str, **kwargs: Any) -> Gateway:
        options: dict[str, Any] = {"api_key": TEST_KEY, "retry": no_wait_policy(), **kwargs}
        return Gateway(
            base_url=base_url,
            _tracer_provider=self.tracer_provider,
            _meter_provider=self.meter_provider,
            **options,
        )

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        (span,) = self.named(name)
        return span

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        """The spans whose parent is ``parent``, in start order."""
        ident = parent.context.span_id
        found = [s for s in self.spans() if s.parent is not None and s.parent.span_id == ident]
        return sorted(found, key=lambda s: s.start_time or 0)

    def points(self, metric: str) -> list[Any]:
        """The data points of ``metric`` (cumulative since the providers were made)."""
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for found in scope.metrics
            if found.name == metric
            for point in found.data.data_points
        ]

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def otel() -> Iterator[Otel]:
    providers = Otel()
    try:
        yield providers
    finally:
        providers.shutdown()


def serve_upload(
    server: FakeServer, *, query: str = SIGNATURE, puts: tuple[Handler, ...] = ()
) -> None:
    """``server`` answers init (a ticket pointing back to itself, signed by ``query``),
    the PUT (``puts`` first, if given, then 200) and complete."""

    async def init(_: web.Request) -> web.StreamResponse:
        ticket = {
            "upload_id": "upl_1",
            "upload_url": f"{server.url}/bucket/upl_1?{query}",
            "method": "PUT",
            "headers": {"Content-Type": "application/octet-stream"},
            "expires_at": "2099-01-01T00:00:00Z",
        }
        return web.json_response(ticket, status=201, headers={"X-Request-Id": "req_init"})

    async def stored(_: web.Request) -> web.StreamResponse:
        return web.Response(status=200)

    async def complete(_: web.Request) -> web.StreamResponse:
        return web.json_response(MEDIA, headers={"X-Request-Id": "req_complete"})

    server.on("POST", "/api/media/upload/init", init)
    server.on("PUT", "/bucket/upl_1", *puts, stored)
    server.on("POST", "/api/media/upload/complete", complete)


@pytest_asyncio.fixture
async def traced_gw(server: FakeServer, otel: Otel) -> AsyncIterator[Gateway]:
    """A client of ``server`` whose spans and metrics go to ``otel``."""
    async with otel.client(server.url) as client:
        yield client


def some_files(folder: Path, n: int) -> list[Path]:
    """``n`` small files of distinct content in ``folder``, for an ingest to upload."""
    paths = []
    for i in range(n):
        path = folder / f"{i}.bin"
        path.write_bytes(f"file {i}".encode())
        paths.append(path)
    return paths

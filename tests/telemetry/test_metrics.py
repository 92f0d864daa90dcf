"""The five metrics after a known workload: two runs (one retried), one upload."""

from __future__ import annotations

from typing import Any

import pytest

from gateway_async import APIConnectionError, Gateway
from tests.conftest import FakeServer, reply
from tests.core.test_transport import RUN
from tests.telemetry.conftest import Otel, serve_upload


def by_attributes(points: list[Any]) -> dict[frozenset[tuple[str, Any]], Any]:
    return {frozenset(dict(point.attributes).items()): point for point in points}


async def test_metric_values_after_a_known_workload(
    server: FakeServer, traced_gw: Gateway, otel: Otel
) -> None:
    failed_run = {**RUN, "model": "demo-other", "status": "failed", "usage": {**RUN["usage"]}}
    failed_run["usage"]["credits"] = "0.5000"
    server.on("POST", "/api/runs", reply(503, {"error": {"code": "busy"}}), reply(200, RUN))
    await traced_gw.runs.create(model="demo-echo", input={"x": 1})  # 503, then 200
    server.on("POST", "/api/runs", reply(200, failed_run))
    await traced_gw.runs.create(model="demo-other", input={"x": 2})
    serve_upload(server)
    await traced_gw.media.upload(b"hello")

    runs = by_attributes(otel.points("gateway.client.runs"))
    assert {key: point.value for key, point in runs.items()} == {
        frozenset({("gateway.model", "demo-echo"), ("gateway.run.status", "succeeded")}): 1,
        frozenset({("gateway.model", "demo-other"), ("gateway.run.status", "failed")}): 1,
    }
    credits = by_attributes(otel.points("gateway.client.credits"))
    assert {key: point.value for key, point in credits.items()} == {
        frozenset({("gateway.model", "demo-echo")}): pytest.approx(0.001),
        frozenset({("gateway.model", "demo-other")}): pytest.approx(0.5),
    }
    (uploaded,) = otel.points("gateway.client.upload.bytes")
    assert uploaded.value == 5
    (retries,) = otel.points("gateway.client.retries")
    assert dict(retries.attributes) == {"gateway.retry.reason": "503"}
    assert retries.value == 1

    durations = by_attributes(otel.points("gateway.client.request.duration"))
    counts = {key: point.count for key, point in durations.items()}
    runs_ok = {("http.request.method", "POST"), ("url.template", "/api/runs")}
    assert counts == {
        frozenset({*runs_ok, ("http.response.status_code", 503)}): 1,
        frozenset({*runs_ok, ("http.response.status_code", 200)}): 2,
        frozenset(
            {
                ("http.request.method", "POST"),
                ("url.template", "/api/media/upload/init"),
                ("http.response.status_code", 201),
            }
        ): 1,
        frozenset({("http.request.method", "PUT"), ("http.response.status_code", 200)}): 1,
        frozenset(
            {
                ("http.request.method", "POST"),
                ("url.template", "/api/media/upload/complete"),
                ("http.response.status_code", 200),
            }
        ): 1,
    }
    assert all(point.sum >= 0 for point in durations.values())
    metric = otel.reader.get_metrics_data()
    assert metric is not None
    units = {
        found.name: found.unit
        for resource in metric.resource_metrics
        for scope in resource.scope_metrics
        for found in scope.metrics
    }
    assert units["gateway.client.request.duration"] == "s"
    assert units["gateway.client.upload.bytes"] == "By"


async def test_connection_failures_count_as_connection_retries(otel: Otel) -> None:
    """Nothing listens on the port: each retry is counted with reason ``connection``."""
    from aiohttp import web

    from tests.conftest import serve_on_loopback

    runner, url = await serve_on_loopback(web.Application())
    await runner.cleanup()  # the port is now closed: connections are refused
    async with otel.client(url, max_retries=2) as gw:
        with pytest.raises(APIConnectionError):
            await gw.billing.wallet()
    (retries,) = otel.points("gateway.client.retries")
    assert dict(retries.attributes) == {"gateway.retry.reason": "connection"}
    assert retries.value == 2
    attempts = otel.named("GET /api/billing/wallet")
    assert [dict(span.attributes or {})["error.type"] for span in attempts] == [
        "APIConnectionError"
    ] * 3

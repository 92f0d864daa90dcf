"""The span trees of calls, uploads, batches and ingests, and the trace context on the wire."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from gateway_async import (
    APITimeoutError,
    Gateway,
    InsufficientFundsError,
    InvalidRequestError,
    RunRequest,
    Timeouts,
)
from gateway_async.emulator import Emulator
from tests.conftest import FakeServer, never, reply
from tests.core.test_transport import RUN, WALLET
from tests.telemetry.conftest import SIGNATURE, Otel, serve_upload, some_files


def traceparent_span_id(header: str) -> int:
    """The parent span id a W3C ``traceparent`` header names (version-trace-span-flags)."""
    return int(header.split("-")[2], 16)


async def test_a_run_is_an_operation_span_over_its_attempt(
    server: FakeServer, traced_gw: Gateway, otel: Otel
) -> None:
    server.on("POST", "/api/runs", reply(200, RUN, headers={"X-Request-Id": "req_run"}))
    await traced_gw.runs.create(model="demo-echo", input={"x": 1}, scope="photos")

    run = otel.one("gateway.runs.create")
    assert run.kind is SpanKind.INTERNAL
    assert run.parent is None
    assert dict(run.attributes or {}) == {
        "gateway.model": "demo-echo",
        "gateway.mode": "execute",
        "gateway.scope": "photos",
        "gateway.run.id": "run_1",
        "gateway.run.status": "succeeded",
        "gateway.credits": 0.001,
        "gateway.request_id": "req_run",
    }
    (attempt,) = otel.children(run)
    assert attempt.name == "POST /api/runs"
    assert attempt.kind is SpanKind.CLIENT
    host, port = server.url.removeprefix("http://").split(":")
    assert dict(attempt.attributes or {}) == {
        "http.request.method": "POST",
        "url.template": "/api/runs",
        "server.address": host,
        "server.port": int(port),
        "http.response.status_code": 200,
        "gateway.request_id": "req_run",
    }
    assert attempt.status.status_code is StatusCode.UNSET
    # The server's trace joins the client's: traceparent names this attempt's CLIENT span.
    sent = server.seen[0].headers["traceparent"]
    assert traceparent_span_id(sent) == attempt.context.span_id
    assert int(sent.split("-")[1], 16) == run.context.trace_id


async def test_a_retried_run_has_one_client_span_per_attempt(
    server: FakeServer, traced_gw: Gateway, otel: Otel
) -> None:
    server.on("POST", "/api/runs", reply(503, {"error": {"code": "busy"}}), reply(200, RUN))
    await traced_gw.runs.create(model="demo-echo", input={"x": 1})

    run = otel.one("gateway.runs.create")
    first, second = otel.children(run)
    assert first.attributes is not None
    assert second.attributes is not None
    assert first.attributes["http.response.status_code"] == 503
    assert first.attributes["error.type"] == "503"
    assert first.status.status_code is StatusCode.ERROR
    assert "http.request.resend_count" not in first.attributes
    assert second.attributes["http.request.resend_count"] == 1
    assert second.attributes["http.response.status_code"] == 200
    assert "error.type" not in second.attributes
    (event,) = run.events
    assert event.name == "gateway.retry"
    assert event.attributes is not None
    assert event.attributes["gateway.retry.reason"] == "503"
    assert event.attributes["gateway.retry.delay"] == 0.0
    # Each attempt carried its own span in traceparent.
    sent = [traceparent_span_id(seen.headers["traceparent"]) for seen in server.seen]
    assert sent == [first.context.span_id, second.context.span_id]


async def test_a_failed_run_names_its_error_type(
    server: FakeServer, traced_gw: Gateway, otel: Otel
) -> None:
    server.on("POST", "/api/runs", reply(402, {"error": {"code": "insufficient_funds"}}))
    with pytest.raises(InsufficientFundsError):
        await traced_gw.runs.create(model="demo-echo", input={"x": 1})
    run = otel.one("gateway.runs.create")
    assert run.attributes is not None
    assert run.attributes["error.type"] == "402"
    assert run.status.status_code is StatusCode.ERROR
    assert "gateway.run.status" not in run.attributes


async def test_an_attempt_timeout_is_error_type_timeout(server: FakeServer, otel: Otel) -> None:
    server.on("GET", "/api/billing/wallet", never())
    timeouts = Timeouts(attempt=0.05, total=5.0)
    async with otel.client(server.url, timeout=timeouts, max_retries=0) as gw:
        with pytest.raises(APITimeoutError):
            await gw.billing.wallet()
    wallet = otel.one("gateway.billing.wallet")
    (attempt,) = otel.children(wallet)
    assert attempt.attributes is not None
    assert attempt.attributes["error.type"] == "timeout"
    assert "http.response.status_code" not in attempt.attributes
    assert wallet.attributes is not None
    assert wallet.attributes["error.type"] == "timeout"


async def test_an_upload_spans_init_put_and_complete(
    server: FakeServer, traced_gw: Gateway, otel: Otel
) -> None:
    serve_upload(server)
    media = await traced_gw.media.upload(b"hello", filename="a.bin")

    upload = otel.one("gateway.media.upload")
    assert upload.attributes is not None
    assert upload.attributes["gateway.upload.bytes"] == media.size
    assert upload.attributes["gateway.media_ref"] == "media://med_1"
    assert upload.attributes["gateway.request_id"] == "req_complete"
    names = [span.name for span in otel.children(upload)]
    assert names == ["POST /api/media/upload/init", "PUT", "POST /api/media/upload/complete"]
    put = otel.children(upload)[1]
    assert put.kind is SpanKind.CLIENT
    assert put.attributes is not None
    assert put.attributes["url.full"] == f"{server.url}/bucket/upl_1"
    assert "url.template" not in put.attributes
    assert put.attributes["http.response.status_code"] == 200
    # traceparent on API requests only: a pre-signed URL may sign its headers.
    by_method = {seen.method: seen for seen in server.seen}
    assert "traceparent" not in by_method["PUT"].headers
    assert SIGNATURE.split("=")[1] in by_method["PUT"].raw_path  # the PUT itself is signed
    assert all("traceparent" in seen.headers for seen in server.seen if seen.method == "POST")


async def test_a_retried_put_counts_its_resends(
    server: FakeServer, traced_gw: Gateway, otel: Otel
) -> None:
    serve_upload(server, puts=(reply(503, raw=b"slow down"),))
    await traced_gw.media.upload(b"hello", filename="a.bin")

    upload = otel.one("gateway.media.upload")
    puts = [span for span in otel.children(upload) if span.name == "PUT"]
    assert [dict(span.attributes or {}).get("http.request.resend_count") for span in puts] == [
        None,
        1,
    ]
    assert dict(puts[0].attributes or {})["error.type"] == "503"
    assert [event.name for event in upload.events] == ["gateway.retry"]


async def test_upload_many_has_each_upload_as_a_child(
    server: FakeServer, traced_gw: Gateway, otel: Otel
) -> None:
    serve_upload(server)
    results = await traced_gw.media.upload_many([b"hello", b"world"], concurrency=2)
    assert all(not isinstance(result, Exception) for result in results)

    batch = otel.one("gateway.media.upload_many")
    uploads = otel.children(batch)
    assert [span.name for span in uploads] == ["gateway.media.upload"] * 2
    assert all(len(otel.children(upload)) == 3 for upload in uploads)


async def test_create_many_has_each_run_as_a_child(
    server: FakeServer, traced_gw: Gateway, otel: Otel
) -> None:
    server.on("POST", "/api/runs", reply(200, RUN))
    requests = [RunRequest(model="demo-echo", input={"i": i}) for i in range(3)]
    await traced_gw.runs.create_many(requests, concurrency=2)

    batch = otel.one("gateway.runs.create_many")
    runs = otel.children(batch)
    assert [span.name for span in runs] == ["gateway.runs.create"] * 3
    assert all([c.name for c in otel.children(run)] == ["POST /api/runs"] for run in runs)


async def test_marketplace_and_billing_operations(
    server: FakeServer, traced_gw: Gateway, otel: Otel
) -> None:
    from tests.core.test_resources import model

    server.on(
        "GET", "/api/marketplace/models", reply(200, {"data": [model("a")], "next_cursor": None})
    )
    server.on("GET", "/api/marketplace/models/a b", reply(200, model("a b")))
    server.on("GET", "/api/billing/wallet", reply(200, WALLET))
    summary = {"start": RUN["created_at"], "end": RUN["created_at"], "total_runs": 0}
    server.on(
        "GET",
        "/api/billing/usage/summary",
        reply(200, {**summary, "total_credits": "0", "by_model": []}),
    )
    assert [m.slug async for m in traced_gw.marketplace.list_models()] == ["a"]
    await traced_gw.marketplace.get_model("a b")
    await traced_gw.billing.wallet()
    await traced_gw.billing.usage_summary()

    expected = {
        "gateway.marketplace.list_models": "GET /api/marketplace/models",
        "gateway.marketplace.get_model": "GET /api/marketplace/models/{slug}",
        "gateway.billing.wallet": "GET /api/billing/wallet",
        "gateway.billing.usage_summary": "GET /api/billing/usage/summary",
    }
    for operation, attempt in expected.items():
        span = otel.one(operation)
        assert span.parent is None
        assert [child.name for child in otel.children(span)] == [attempt]


async def test_an_ingest_is_the_root_of_its_items(
    tmp_path: Path, gateway_emulator: Emulator, otel: Otel
) -> None:
    """trace="ingest": one tree (what every ingest was before trace= existed)."""
    paths = some_files(tmp_path, 3)
    async with otel.client(gateway_emulator.base_url, api_key=gateway_emulator.api_key) as gw:
        ingest = gw.ingest(paths, model="demo-image-embed", scope="photos", trace="ingest")
        items = [item async for item in ingest]
    assert all(item.ok for item in items)

    root = otel.one("gateway.ingest")
    assert root.parent is None
    assert root.attributes is not None
    assert root.attributes["gateway.ingest.total"] == 3
    assert root.attributes["gateway.ingest.succeeded"] == 3
    assert root.attributes["gateway.ingest.uploaded"] == 3
    assert root.attributes["gateway.ingest.failed"] == 0
    children = [span.name for span in otel.children(root)]
    assert children.count("gateway.media.upload") == 3
    assert children.count("gateway.runs.create") == 3
    assert "gateway.marketplace.get_model" in children
    trace_ids = {span.context.trace_id for span in otel.spans()}
    assert trace_ids == {root.context.trace_id}


async def test_leaving_list_models_early_ends_its_span_cleanly(
    server: FakeServer, traced_gw: Gateway, otel: Otel
) -> None:
    from contextlib import aclosing

    from tests.core.test_resources import model

    page = {"data": [model("a"), model("b")], "next_cursor": "c2"}
    server.on("GET", "/api/marketplace/models", reply(200, page))
    async with aclosing(traced_gw.marketplace.list_models()) as models:
        async for found in models:
            assert found.slug == "a"
            break
    listing = otel.one("gateway.marketplace.list_models")
    assert "error.type" not in dict(listing.attributes or {})
    assert [child.name for child in otel.children(listing)] == ["GET /api/marketplace/models"]


async def test_a_long_ingest_makes_bounded_traces_linked_to_it(
    tmp_path: Path, gateway_emulator: Emulator, otel: Otel
) -> None:
    """The default, trace="item": each item is a trace of its own (its upload and run
    under a gateway.ingest.item span linked to the ingest), so a worker that runs for ever
    never builds one ever-growing trace (it was 27 spans under one root for 4 files)."""
    paths = some_files(tmp_path, 12)
    async with otel.client(gateway_emulator.base_url, api_key=gateway_emulator.api_key) as gw:
        ingest = gw.ingest(paths, model="demo-image-embed", scope="photos")
        async with ingest:
            assert all([item.ok async for item in ingest])
    root = otel.one("gateway.ingest")
    items = otel.named("gateway.ingest.item")
    assert len(items) == 12
    assert {span.context.trace_id for span in items} | {root.context.trace_id} == {
        span.context.trace_id for span in otel.spans()
    }
    assert len({span.context.trace_id for span in items}) == 12
    for item in items:
        assert item.parent is None
        assert [link.context.span_id for link in item.links] == [root.context.span_id]
        in_trace = [s for s in otel.spans() if s.context.trace_id == item.context.trace_id]
        names = sorted(s.name for s in otel.children(item))
        assert names == ["gateway.media.upload", "gateway.runs.create"]
        assert len(in_trace) <= 8  # item, upload (init, PUT, complete), run (attempt)
    in_root = [s for s in otel.spans() if s.context.trace_id == root.context.trace_id]
    assert "gateway.media.upload" not in {s.name for s in in_root}
    assert len(in_root) <= 4  # the ingest, its get_model and that call's attempt


async def test_per_batch_traces(
    tmp_path: Path, gateway_emulator: Emulator, otel: Otel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trace="batch": every BATCH items share a trace, linked to the ingest; the last,
    partial batch ends with the ingest."""
    from gateway_async._pipeline import _tracing

    monkeypatch.setattr(_tracing, "BATCH", 4)
    paths = some_files(tmp_path, 10)
    async with otel.client(gateway_emulator.base_url, api_key=gateway_emulator.api_key) as gw:
        ingest = gw.ingest(paths, model="demo-image-embed", scope="p", trace="batch")
        async with ingest:
            assert all([item.ok async for item in ingest])
    root = otel.one("gateway.ingest")
    batches = otel.named("gateway.ingest.batch")
    assert sorted(b.attributes["gateway.ingest.batch"] for b in batches) == [0, 1, 2]  # type: ignore[index]
    sizes = sorted([s.name for s in otel.children(b)].count("gateway.runs.create") for b in batches)
    assert sizes == [2, 4, 4]
    assert all(b.links[0].context.span_id == root.context.span_id for b in batches)


async def test_a_wrong_trace_mode_is_refused(gateway_emulator: Emulator, otel: Otel) -> None:
    async with otel.client(gateway_emulator.base_url, api_key=gateway_emulator.api_key) as gw:
        with pytest.raises(InvalidRequestError, match="trace: expected one of 'item'"):
            gw.ingest([], model="demo-image-embed", trace="items")  # type: ignore[typeddict-item]

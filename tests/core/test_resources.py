"""Marketplace pagination and slugs, billing parameters, and batched runs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from aioresponses import aioresponses

from gateway_async import (
    AuthenticationError,
    Gateway,
    GatewayError,
    InvalidRequestError,
    NotAttemptedError,
    NotFoundError,
    PermissionDeniedError,
    Run,
    RunRequest,
    UnprocessableEntityError,
)
from gateway_async.resources.runs import Runs
from tests.conftest import TEST_KEY, FakeServer, reply
from tests.core.test_transport import RUN, WALLET


def model(slug: str) -> dict[str, Any]:
    return {
        "slug": slug,
        "name": slug.title(),
        "description": "",
        "modes": ["execute"],
        "vector_modes": [],
        "input_schema": {},
        "params_schema": {},
        "price_per_run": "0.0010",
        "release": "2026-11-01",
    }


async def test_list_models_follows_next_cursor(server: FakeServer, gw: Gateway) -> None:
    """Three pages are fetched in turn; q, limit and cursor are sent."""
    server.on(
        "GET",
        "/api/marketplace/models",
        reply(200, {"data": [model("a"), model("b")], "next_cursor": "c1"}),
        reply(200, {"data": [model("c")], "next_cursor": "c2"}),
        reply(200, {"data": [model("d")], "next_cursor": None}),
    )
    slugs = [m.slug async for m in gw.marketplace.list_models(q="demo", page_size=2)]
    assert slugs == ["a", "b", "c", "d"]
    assert [s.query for s in server.seen] == [
        {"limit": "2", "q": "demo"},
        {"limit": "2", "q": "demo", "cursor": "c1"},
        {"limit": "2", "q": "demo", "cursor": "c2"},
    ]


async def test_list_models_refuses_a_malformed_page(server: FakeServer, gw: Gateway) -> None:
    """A page without a data list is a contract error, not an empty marketplace."""
    from gateway_async import APIResponseValidationError

    server.on("GET", "/api/marketplace/models", reply(200, {"items": []}))
    with pytest.raises(APIResponseValidationError, match="malformed model page"):
        [m async for m in gw.marketplace.list_models()]


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (["x"], r"MarketplaceModel at data\[0\], got str"),
        ([model("a"), {**model("b"), "price_per_run": "1e-3"}], r"data\[1\]\.price_per_run"),
        ([{**model("a"), "modes": ["execute", 2]}], r"data\[0\]\.modes\[1\]"),
    ],
    ids=["not an object", "money in exponent form", "a mode not a string"],
)
async def test_a_malformed_model_names_its_place_in_the_page(
    server: FakeServer, gw: Gateway, data: list[Any], named: str
) -> None:
    """The error says which item of the page, and which field of it, is wrong."""
    from gateway_async import APIResponseValidationError

    server.on("GET", "/api/marketplace/models", reply(200, {"data": data, "next_cursor": None}))
    with pytest.raises(APIResponseValidationError, match=named):
        [m async for m in gw.marketplace.list_models()]


@pytest.mark.parametrize("size", [0, 101, -1, True, 2.5])
async def test_page_size_is_checked(gw: Gateway, size: Any) -> None:
    """page_size outside 1..100 is refused before sending."""
    with pytest.raises(InvalidRequestError, match="page_size"):
        [m async for m in gw.marketplace.list_models(page_size=size)]


async def test_slug_is_one_percent_encoded_segment(server: FakeServer, gw: Gateway) -> None:
    """get_model('../billing/wallet') asks for that odd slug, never for the wallet."""
    with pytest.raises(NotFoundError):
        await gw.marketplace.get_model("../billing/wallet")
    assert server.seen[0].raw_path == "/api/marketplace/models/..%2Fbilling%2Fwallet"


@pytest.mark.parametrize("slug", ["", ".", ".."])
async def test_dot_and_empty_slugs_are_refused(server: FakeServer, gw: Gateway, slug: str) -> None:
    """Dot segments would be collapsed by URL rules; they are refused outright."""
    with pytest.raises(InvalidRequestError, match="slug"):
        await gw.marketplace.get_model(slug)
    assert server.seen == []


async def test_get_model(server: FakeServer, gw: Gateway) -> None:
    """A model detail parses with its Decimal price."""
    server.on("GET", "/api/marketplace/models/demo-echo", reply(200, model("demo-echo")))
    found = await gw.marketplace.get_model("demo-echo")
    assert found.price_per_run == Decimal("0.0010")


async def test_usage_summary_sends_rfc3339_range(server: FakeServer, gw: Gateway) -> None:
    """start and end go out as RFC 3339 UTC strings."""
    body = {
        "start": "2026-11-01T00:00:00Z",
        "end": "2026-11-02T00:00:00Z",
        "total_runs": 0,
        "total_credits": "0",
        "by_model": [],
    }
    server.on("GET", "/api/billing/usage/summary", reply(200, body))
    start = datetime(2026, 11, 1, tzinfo=UTC)
    summary = await gw.billing.usage_summary(start=start, end=datetime(2026, 11, 2, tzinfo=UTC))
    assert summary.total_credits == Decimal(0)
    assert server.seen[0].query == {"start": "2026-11-01T00:00:00Z", "end": "2026-11-02T00:00:00Z"}


async def test_usage_summary_refuses_naive_or_reversed_times(gw: Gateway) -> None:
    """Naive datetimes are ambiguous and a reversed range is a mistake."""
    with pytest.raises(InvalidRequestError, match="aware datetime"):
        await gw.billing.usage_summary(start=datetime(2026, 1, 1))
    with pytest.raises(InvalidRequestError, match="before start"):
        await gw.billing.usage_summary(
            start=datetime(2026, 2, 1, tzinfo=UTC), end=datetime(2026, 1, 1, tzinfo=UTC)
        )


async def test_wallet_under_aioresponses() -> None:
    """The wallet parses from a mocked session too."""
    with aioresponses() as mocked:
        mocked.get("https://gw.example/api/billing/wallet", payload=WALLET)
        async with Gateway(api_key=TEST_KEY, base_url="https://gw.example") as gw:
            wallet = await gw.billing.wallet()
    assert wallet.balance == Decimal("12.5")


# -- create_many ------------------------------------------------------------------------------


def echo_by_model() -> Any:
    """A runs handler whose answer depends on the requested model."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        status = {"missing": 404, "bad": 422, "denied": 403, "nokey": 401}.get(body["model"])
        if status:
            return web.json_response({"error": {"code": "x", "message": "no"}}, status=status)
        return web.json_response({**RUN, "id": f"run_{body['input']['i']}"})

    return handler


def req(i: int, model_slug: str = "demo-echo") -> RunRequest:
    return RunRequest(model=model_slug, input={"i": i})


async def test_create_many_keeps_order_and_isolates_failures(
    server: FakeServer, gw: Gateway
) -> None:
    """404, 422 and 403 items fail alone; every other item still runs, in input order."""
    server.on("POST", "/api/runs", echo_by_model())
    models = ["demo-echo", "missing", "demo-echo", "bad", "denied", "demo-echo"]
    results = await gw.runs.create_many([req(i, m) for i, m in enumerate(models)], concurrency=3)
    kinds = [type(r).__name__ if not isinstance(r, Run) else r.id for r in results]
    assert kinds == [
        "run_0",
        "NotFoundError",
        "run_2",
        "UnprocessableEntityError",
        "PermissionDeniedError",
        "run_5",
    ]
    assert isinstance(results[4], PermissionDeniedError)
    assert isinstance(results[3], UnprocessableEntityError)


async def test_create_many_stops_after_a_dooming_error(server: FakeServer, gw: Gateway) -> None:
    """After a 401 no new request starts; the rest are NotAttemptedError naming the cause."""
    server.on("POST", "/api/runs", echo_by_model())
    requests = [req(0, "nokey")] + [req(i) for i in range(1, 50)]
    results = await gw.runs.create_many(requests, concurrency=1)
    assert isinstance(results[0], AuthenticationError)
    skipped = results[1:]
    assert all(isinstance(r, NotAttemptedError) for r in skipped)
    first = skipped[0]
    assert isinstance(first, NotAttemptedError)
    assert isinstance(first.reason, AuthenticationError)
    assert "AuthenticationError" in str(first)
    assert len(server.seen) == 1


async def test_create_many_consumes_requests_lazily(server: FakeServer, gw: Gateway) -> None:
    """A generator is pulled only as fast as slots free up, never materialised."""
    release = asyncio.Event()
    parked = asyncio.Event()
    in_flight = 0
    peak = 0

    async def slow(request: web.Request) -> web.StreamResponse:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight == 4:
            parked.set()
        await release.wait()
        in_flight -= 1
        body = await request.json()
        return web.json_response({**RUN, "id": f"run_{body['input']['i']}"})

    server.on("POST", "/api/runs", slow)
    pulled = 0

    def requests() -> Iterator[RunRequest]:
        nonlocal pulled
        for i in range(200):
            pulled += 1
            yield req(i)

    task = asyncio.create_task(gw.runs.create_many(requests(), concurrency=4))
    await parked.wait()
    assert pulled == 4
    release.set()
    results = await task
    assert [r.id for r in results if isinstance(r, Run)] == [f"run_{i}" for i in range(200)]
    assert peak <= 4


async def test_create_many_reports_non_request_items(server: FakeServer, gw: Gateway) -> None:
    """A stray dict in the batch is its own InvalidRequestError; the rest runs."""
    server.on("POST", "/api/runs", echo_by_model())
    results = await gw.runs.create_many([req(0), {"model": "x"}, req(2)])  # type: ignore[list-item]
    assert isinstance(results[1], InvalidRequestError)
    assert isinstance(results[0], Run)
    assert isinstance(results[2], Run)


async def test_create_many_cancellation_cancels_in_flight(server: FakeServer, gw: Gateway) -> None:
    """Cancelling the batch cancels its requests; the server sees the clients go away."""
    started = asyncio.Event()
    all_cancelled = asyncio.Event()
    cancelled = 0

    arrived = 0

    async def hang(_: web.Request) -> web.StreamResponse:
        nonlocal cancelled, arrived
        arrived += 1
        if arrived == 5:
            started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled += 1
            if cancelled == 5:
                all_cancelled.set()
            raise
        raise AssertionError("unreachable")

    server.on("POST", "/api/runs", hang)
    task = asyncio.create_task(gw.runs.create_many([req(i) for i in range(10)], concurrency=5))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(all_cancelled.wait(), 5)
    me = asyncio.current_task()
    leftover = [t for t in asyncio.all_tasks() if t is not me and "worker" in repr(t.get_coro())]
    assert leftover == []


@pytest.mark.parametrize("concurrency", [0, -1, True])
async def test_create_many_checks_concurrency(gw: Gateway, concurrency: Any) -> None:
    """A nonsensical bound is refused up front."""
    with pytest.raises(InvalidRequestError, match="concurrency"):
        await gw.runs.create_many([req(0)], concurrency=concurrency)


async def test_create_many_results_are_gateway_errors_or_runs(
    server: FakeServer, gw: Gateway
) -> None:
    """The documented element type holds for every item."""
    server.on("POST", "/api/runs", echo_by_model())
    results = await gw.runs.create_many(req(i) for i in range(20))
    assert all(isinstance(r, Run | GatewayError) for r in results)
    assert len(results) == 20


async def test_create_many_keeps_paid_runs_when_one_item_raises_a_foreign_error(
    server: FakeServer, gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any exception of one item becomes that item's GatewayError result; the runs the
    Gateway executed (and charged) are returned, never lost to an ExceptionGroup."""
    server.on("POST", "/api/runs", echo_by_model())
    send = Runs.send

    async def flaky(self: Runs, request: RunRequest, **kw: Any) -> Run:
        if request.input["i"] == 2:
            raise RuntimeError("a bug somewhere below")
        return await send(self, request, **kw)

    monkeypatch.setattr(Runs, "send", flaky)
    results = await gw.runs.create_many([req(i) for i in range(5)], concurrency=2)
    assert [r.id for r in results if isinstance(r, Run)] == ["run_0", "run_1", "run_3", "run_4"]
    failed = results[2]
    assert isinstance(failed, GatewayError)
    assert "RuntimeError: a bug somewhere below" in str(failed)
    assert isinstance(failed.__cause__, RuntimeError)
    assert len(server.seen) == 4


async def test_create_many_keeps_paid_runs_when_the_iterable_raises(
    server: FakeServer, gw: Gateway
) -> None:
    """A generator that fails part-way: the runs before it are returned, its error is the
    result at the position where it failed, nothing after it is sent."""
    server.on("POST", "/api/runs", echo_by_model())

    def requests() -> Iterator[RunRequest]:
        yield req(0)
        yield req(1)
        raise OSError("the CSV file went away")

    results = await gw.runs.create_many(requests(), concurrency=3)
    assert [type(r).__name__ for r in results] == ["Run", "Run", "InvalidRequestError"]
    failed = results[2]
    assert isinstance(failed, InvalidRequestError)
    assert failed.field == "requests"
    assert "OSError (the CSV file went away) at item 2" in str(failed)
    assert len(server.seen) == 2


async def test_create_many_refuses_a_non_iterable(gw: Gateway) -> None:
    with pytest.raises(InvalidRequestError, match="requests: int is not iterable"):
        await gw.runs.create_many(42)  # type: ignore[arg-type]


async def test_create_many_over_a_generator_that_builds_a_bad_request(
    server: FakeServer, gw: Gateway
) -> None:
    """An unencodable input is refused as its RunRequest is built, inside the caller's
    generator: that position holds the InvalidRequestError with its field path, the runs
    before it are kept, and no TypeError surfaces mid-batch."""
    server.on("POST", "/api/runs", echo_by_model())
    inputs: list[dict[str, Any]] = [{"i": 0}, {"i": 1}, {"i": 2, "when": datetime.now().date()}]

    def requests() -> Iterator[RunRequest]:
        for body in inputs:
            yield RunRequest(model="demo-echo", input=body)

    results = await gw.runs.create_many(requests(), concurrency=2)
    assert [type(r).__name__ for r in results] == ["Run", "Run", "InvalidRequestError"]
    refused = results[2]
    assert isinstance(refused, InvalidRequestError)
    assert refused.field == "input.when"
    assert len(server.seen) == 2

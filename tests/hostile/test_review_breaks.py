"""What an adversarial review of issue #12's promises broke, through the public API against
loopback servers: the spend cap under a surprise price, NaN timeouts, cursor loops, an
upload outliving its timeout, untyped errors from careless input, hostile money values,
secrets kept in exception chains, and the budget's stopping rule."""

from __future__ import annotations

import asyncio
import itertools
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from gateway_async import (
    APIResponseValidationError,
    APITimeoutError,
    ConfigurationError,
    Gateway,
    GatewayError,
    InvalidRequestError,
    MediaRef,
    RetryPolicy,
    Timeouts,
)
from gateway_async.pipeline import BudgetExhaustedError
from tests.conftest import TEST_KEY, FakeServer, no_wait_policy, reply, serve_on_loopback
from tests.hostile.raw import RawServer

NAN, INF = float("nan"), float("inf")
SIG = "SIGSECRET987654"


def fake_gateway(*, price: str = "0.0010", credits: str = "0.0010") -> tuple[web.Application, Any]:
    """A Gateway whose model lists ``price`` per run and charges ``credits``; counts runs."""
    app, ids, runs = web.Application(), itertools.count(), {"n": 0}
    model = {
        "slug": "m",
        "name": "m",
        "description": "",
        "modes": ["execute", "index"],
        "vector_modes": ["index"],
        "input_schema": {"type": "object", "required": ["image"]},
        "params_schema": {},
        "price_per_run": price,
        "release": "2026-11-01",
    }
    wallet = {"workspace_id": "w", "balance": "100", "currency": "c", "updated_at": _NOW}

    async def run(request: web.Request) -> web.Response:
        body = await request.json()
        runs["n"] += 1
        return web.json_response(
            {
                "id": f"run_{next(ids)}",
                "model": "m",
                "mode": body.get("mode") or "execute",
                "scope": body.get("scope"),
                "status": "succeeded",
                "output": {},
                "error": None,
                "usage": {"credits": credits, "duration_ms": 1},
                "created_at": _NOW,
            }
        )

    app.router.add_get("/api/marketplace/models/m", reply(body=model))
    app.router.add_get("/api/billing/wallet", reply(body=wallet))
    app.router.add_post("/api/runs", run)
    return app, runs


_NOW = "2026-11-24T12:00:00Z"
REFS = [MediaRef(media_ref=f"mref_{i}", size=1, content_type="image/png") for i in range(10)]


async def ingest_all(url: str, **options: Any) -> Any:
    async with (
        Gateway(api_key=TEST_KEY, base_url=url, retry=RetryPolicy(max_retries=0)) as gw,
        gw.ingest(REFS, model="m", scope="s", **options) as ing,
    ):
        items = [item async for item in ing]
    return ing.summary, items


# -- 1. max_spend under a charge above the listed price ----------------------------------


@pytest.mark.parametrize("run_concurrency", [32, 1])
async def test_max_spend_holds_when_runs_cost_more_than_listed(run_concurrency: int) -> None:
    """Listed at 0.0010, charged 0.1000: the probe shows the price, then the cap holds
    (it ended at 1.00 with 32 runs in flight, 0.30 with one)."""
    app, runs = fake_gateway(price="0.0010", credits="0.1000")
    runner, url = await serve_on_loopback(app)
    try:
        summary, items = await ingest_all(
            url, max_spend=Decimal("0.25"), run_concurrency=run_concurrency
        )
    finally:
        await runner.cleanup()
    assert summary.credits <= Decimal("0.25")
    assert runs["n"] * Decimal("0.1000") <= Decimal("0.25")  # what the server charged
    assert (summary.succeeded, summary.not_run, summary.stopped) == (2, 8, "budget")
    assert all(isinstance(i.error, BudgetExhaustedError) for i in items if not i.ok)


# -- 2. NaN (and infinite) timeouts --------------------------------------------------------


TIMEOUT_CONFIGS: list[tuple[str, Callable[[], object]]] = [
    ("Timeouts(total=nan)", lambda: Timeouts(total=NAN)),
    ("Timeouts(attempt=nan)", lambda: Timeouts(attempt=NAN)),
    ("Timeouts(connect=nan)", lambda: Timeouts(connect=NAN)),
    ("Timeouts(total=inf)", lambda: Timeouts(total=INF)),
    ("RetryPolicy(base_delay=nan)", lambda: RetryPolicy(base_delay=NAN)),
    ("RetryPolicy(max_delay=nan)", lambda: RetryPolicy(max_delay=NAN)),
    ("RetryPolicy(max_retry_after=nan)", lambda: RetryPolicy(max_retry_after=NAN)),
    ("Gateway(timeout=nan)", lambda: Gateway(api_key=TEST_KEY, base_url=_LOOP, timeout=NAN)),
    (
        "Gateway(upload_stall_timeout=nan)",
        lambda: Gateway(api_key=TEST_KEY, base_url=_LOOP, upload_stall_timeout=NAN),
    ),
    (
        "Gateway(upload_stall_timeout=inf)",
        lambda: Gateway(api_key=TEST_KEY, base_url=_LOOP, upload_stall_timeout=INF),
    ),
]
_LOOP = "http://127.0.0.1:9"


@pytest.mark.parametrize(
    "build", [c[1] for c in TIMEOUT_CONFIGS], ids=[c[0] for c in TIMEOUT_CONFIGS]
)
def test_nan_and_infinite_timeouts_are_refused_when_built(build: Callable[[], object]) -> None:
    with pytest.raises(ConfigurationError, match=r"finite .*got (nan|inf)"):
        build()


@pytest.mark.parametrize("value", [NAN, INF])
async def test_a_nan_per_call_timeout_is_refused_before_sending(
    server: FakeServer, gw: Gateway, value: float
) -> None:
    """It was taken, and the call then waited forever on a server that never answers."""
    with pytest.raises(ConfigurationError, match=r"^timeout must be a finite"):
        await gw.billing.wallet(timeout=value)
    with pytest.raises(ConfigurationError, match=r"^timeout must be a finite"):
        await gw.runs.create(model="m", input={}, timeout=value)
    assert server.seen == []


# -- 3. a cursor loop --------------------------------------------------------------------


async def test_a_repeated_cursor_ends_the_listing(server: FakeServer, gw: Gateway) -> None:
    page = {"data": [], "next_cursor": "c1"}
    server.on("GET", "/api/marketplace/models", reply(body=page))
    async with asyncio.timeout(10):
        with pytest.raises(APIResponseValidationError, match=r"cursor loop.*'c1'"):
            [m async for m in gw.marketplace.list_models()]
    assert [s.query.get("cursor") for s in server.seen] == [None, "c1"]


# -- 4. an upload outliving an explicit timeout ------------------------------------------


@pytest_asyncio.fixture
async def deaf_storage() -> AsyncIterator[RawServer]:
    """Storage that takes the request head and never reads the body nor answers."""
    storage = await RawServer(read_body=False).start()
    try:
        yield storage
    finally:
        await storage.close()


def serve_init(server: FakeServer, upload_url: str) -> None:
    ticket = {
        "upload_id": "up_1",
        "upload_url": upload_url,
        "method": "PUT",
        "headers": {"Content-Type": "application/octet-stream"},
        "expires_at": "2099-01-01T00:00:00Z",
    }
    server.on("POST", "/api/media/upload/init", reply(201, ticket))


@pytest.mark.parametrize("many", [False, True], ids=["upload", "upload_many"])
async def test_an_explicit_timeout_bounds_the_whole_upload(
    server: FakeServer, deaf_storage: RawServer, many: bool
) -> None:
    """The stall watchdog (30 s here) would let it run on; ``timeout=0.5`` must not."""
    serve_init(server, f"{deaf_storage.url}/o?X-Sig={SIG}")
    async with Gateway(
        api_key=TEST_KEY, base_url=server.url, retry=no_wait_policy(), upload_stall_timeout=30
    ) as gw:
        async with asyncio.timeout(10):  # the test's own guard: it hung here before
            if many:
                (result,) = await gw.media.upload_many([b"x" * 4096], timeout=0.5)
            else:
                with pytest.raises(APITimeoutError) as info:
                    await gw.media.upload(b"x" * 4096, filename="a.bin", timeout=0.5)
                result = info.value
    assert isinstance(result, APITimeoutError)
    assert "timeout=0.5" in str(result)
    assert deaf_storage.heads  # the PUT had begun


# -- 5. careless input: typed errors before any byte -------------------------------------

PLUS5 = timezone(timedelta(hours=5))
MINUS5 = timezone(timedelta(hours=-5))


async def _ingest(gw: Gateway, sources: Any = (b"x",), **options: Any) -> None:
    async with gw.ingest(sources, model="m", scope="s", **options) as ing:
        [item async for item in ing]


def _careless(tmp: Path) -> Iterator[tuple[str, str, Callable[[Gateway], Awaitable[Any]]]]:
    yield (
        "aware datetime in year 1",
        "input.d",
        lambda gw: gw.runs.create(model="m", input={"d": datetime(1, 1, 1, tzinfo=PLUS5)}),
    )
    yield (
        "usage_summary(start=datetime.min at +5h)",
        "start",
        lambda gw: gw.billing.usage_summary(start=datetime.min.replace(tzinfo=PLUS5)),
    )
    yield (
        "usage_summary(end=datetime.max at -5h)",
        "end",
        lambda gw: gw.billing.usage_summary(end=datetime.max.replace(tzinfo=MINUS5)),
    )
    yield ("get_model(lone surrogate)", "slug", lambda gw: gw.marketplace.get_model("\ud800"))
    yield (
        "runs.send(dict)",
        "request",
        lambda gw: gw.runs.send({"model": "m", "input": {}}),  # type: ignore[arg-type]
    )
    yield ("ingest(None)", "sources", lambda gw: _ingest(gw, None))
    yield ("ingest(journal=5)", "journal", lambda gw: _ingest(gw, journal=5))
    yield ("ingest(journal=<a directory>)", "journal", lambda gw: _ingest(gw, journal=tmp))
    yield ("ingest(on_event=5)", "on_event", lambda gw: _ingest(gw, on_event=5))
    yield (
        "upload(on_progress=5)",
        "on_progress",
        lambda gw: gw.media.upload(b"abc", filename="a.bin", on_progress=5),  # type: ignore[arg-type]
    )
    yield (
        "upload_many(on_progress=5)",
        "on_progress",
        lambda gw: gw.media.upload_many([b"abc"], on_progress=5),  # type: ignore[arg-type]
    )


CARELESS = list(_careless(Path(".")))


@pytest.mark.parametrize("index", range(len(CARELESS)), ids=[c[0] for c in CARELESS])
async def test_careless_input_is_a_typed_error_before_any_request(
    server: FakeServer, gw: Gateway, tmp_path: Path, index: int
) -> None:
    """Each raised OverflowError, UnicodeEncodeError, AttributeError, TypeError or
    sqlite3's error, some after requests were sent."""
    _, field, call = list(_careless(tmp_path))[index]
    with pytest.raises(InvalidRequestError) as info:
        await call(gw)
    assert info.value.field == field
    assert field in str(info.value)
    assert server.seen == []


# -- 6. hostile money ----------------------------------------------------------------------

HOSTILE_MONEY = ["1E+999999999", "-5", "1E-999999999", "1E+15", "0.0000000000000000001"]


@pytest.mark.parametrize("amount", HOSTILE_MONEY)
async def test_a_hostile_charge_is_a_validation_error_naming_the_field(amount: str) -> None:
    """ "1E+999999999" raised decimal.Overflow out of ingest(max_spend=...); "-5" passed."""
    app, _ = fake_gateway(credits=amount)
    runner, url = await serve_on_loopback(app)
    try:
        summary, items = await ingest_all(url, max_spend=Decimal("1"))
    finally:
        await runner.cleanup()
    assert items
    assert all(isinstance(i.error, APIResponseValidationError) for i in items)
    assert "Run.usage.credits" in str(items[0].error)
    assert summary.credits == 0


@pytest.mark.parametrize("amount", HOSTILE_MONEY)
async def test_a_hostile_price_fails_the_ingest_with_a_typed_error(amount: str) -> None:
    app, _ = fake_gateway(price=amount)
    runner, url = await serve_on_loopback(app)
    try:
        with pytest.raises(APIResponseValidationError, match="price_per_run"):
            await ingest_all(url, max_spend=Decimal("1"))
    finally:
        await runner.cleanup()


# -- 7. secrets in exception chains -------------------------------------------------------

HOSTILE_ANSWERS = {
    "malformed status line": b"garbage\r\n\r\n",
    "70 KB header line": b"HTTP/1.1 200 OK\r\nX-Junk: " + b"a" * 70_000 + b"\r\n\r\n",
    "bad Content-Length": b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n{}",
    "too many headers": b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 40_000 + b"\r\n",
    "cut-off body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}",
}


def everything_reachable(error: BaseException) -> list[str]:
    """The text of every object reachable from ``error``: each exception of its
    ``__cause__``/``__context__`` chain and their args (recursively), their str and repr,
    aiohttp's ``request_info``, and the formatted traceback of the whole chain."""
    texts, seen = ["".join(traceback.format_exception(error))], set()
    pending: list[object] = [error]
    while pending:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        texts += [repr(node), str(node)]
        if isinstance(node, BaseException):
            texts.append(repr(getattr(node, "request_info", None)))
            pending += [node.__cause__, node.__context__, *node.args]
    return texts


def assert_no_secret(error: BaseException, *secrets: str) -> None:
    assert isinstance(error, GatewayError)
    for text in everything_reachable(error):
        for secret in secrets:
            assert secret not in text, f"{secret} reachable from {type(error).__name__}"


@pytest.mark.parametrize("answer", HOSTILE_ANSWERS.values(), ids=HOSTILE_ANSWERS.keys())
async def test_no_api_key_is_reachable_from_transport_errors(answer: bytes) -> None:
    raw = await RawServer(answer).start()
    try:
        async with Gateway(
            api_key=TEST_KEY, base_url=raw.url, retry=no_wait_policy(1), timeout=5
        ) as gw:
            with pytest.raises(GatewayError) as info:
                await gw.billing.wallet()
    finally:
        await raw.close()
    assert_no_secret(info.value, TEST_KEY)


@pytest.mark.parametrize("answer", HOSTILE_ANSWERS.values(), ids=HOSTILE_ANSWERS.keys())
@pytest.mark.parametrize("scheme", ["http", "ftp"])
async def test_no_signature_is_reachable_from_storage_errors(
    server: FakeServer, answer: bytes, scheme: str
) -> None:
    storage = await RawServer(answer).start()
    serve_init(server, f"{scheme}{storage.url[4:]}/bucket/o?X-Sig={SIG}&X-Cred=abc{SIG}")
    error = await failed_upload(server, storage, b"hello")
    assert_no_secret(error, TEST_KEY, SIG)


async def failed_upload(server: FakeServer, storage: RawServer, data: bytes) -> GatewayError:
    """The error of uploading ``data`` through ``server`` to a hostile ``storage`` (closed)."""
    try:
        async with Gateway(
            api_key=TEST_KEY, base_url=server.url, retry=no_wait_policy(1), timeout=5
        ) as gw:
            with pytest.raises(GatewayError) as info:
                await gw.media.upload(data, filename="a.png")
    finally:
        await storage.close()
    return info.value


@pytest.mark.parametrize("answer", HOSTILE_ANSWERS.values(), ids=HOSTILE_ANSWERS.keys())
async def test_no_signature_is_reachable_from_multipart_part_errors(
    server: FakeServer, answer: bytes
) -> None:
    """The same walk for a part PUT of a multipart upload (contract v2), after its retries."""
    storage = await RawServer(answer).start()
    ticket = {
        "upload_id": "up_1",
        "method": "PUT",
        "headers": {},
        "expires_at": "2099-01-01T00:00:00Z",
        "part_size": 3,
        "parts": [
            {"part_number": n, "upload_url": f"{storage.url}/o?partNumber={n}&X-Sig={SIG}"}
            for n in (1, 2)
        ],
    }
    server.on("POST", "/api/media/upload/init", reply(201, ticket))
    error = await failed_upload(server, storage, b"hello!")
    assert {b"partNumber=1" in h for h in storage.heads} == {True, False}, "part PUTs were sent"
    assert_no_secret(error, TEST_KEY, SIG)


# -- 8. what the budget does with the sources left ---------------------------------------


async def test_a_spent_budget_stops_reading_an_endless_source() -> None:
    """docs/pipeline.md: items already read are yielded with BudgetExhaustedError, reading
    stops (the source may be endless), and ``summary.stopped == "budget"``."""
    app, _ = fake_gateway()
    runner, url = await serve_on_loopback(app)
    pulled = itertools.count()

    def endless() -> Iterator[MediaRef]:
        for i in pulled:
            yield MediaRef(media_ref=f"mref_{i}", size=1, content_type="image/png")

    try:
        async with (
            Gateway(api_key=TEST_KEY, base_url=url, retry=RetryPolicy(max_retries=0)) as gw,
            gw.ingest(endless(), model="m", scope="s", max_spend=Decimal("0.0030")) as ing,
        ):
            async with asyncio.timeout(20):
                items = [item async for item in ing]
    finally:
        await runner.cleanup()
    summary = ing.summary
    assert (summary.succeeded, summary.stopped) == (3, "budget")
    assert len(items) == summary.total  # every item read is yielded, and only those
    assert all(isinstance(i.error, BudgetExhaustedError) for i in items if not i.ok)
    assert summary.not_run == summary.total - 3

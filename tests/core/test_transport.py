"""The request path on a real loopback server: headers, idempotency, retries, deadlines,
redirects and body limits."""

from __future__ import annotations

import asyncio
import logging
import platform
import re
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway_async import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    Gateway,
    RateLimitError,
    RetryPolicy,
    ServerError,
    Timeouts,
)
from gateway_async._transport import MAX_RESPONSE_BYTES
from tests.conftest import TEST_KEY, FakeServer, never, no_wait_policy, reply

RUN = {
    "id": "run_1",
    "model": "demo-echo",
    "mode": "execute",
    "scope": None,
    "status": "succeeded",
    "output": {"echo": 1},
    "error": None,
    "usage": {"credits": "0.0010", "duration_ms": 3},
    "created_at": "2026-11-24T12:00:00Z",
}
WALLET = {
    "workspace_id": "ws_1",
    "balance": "12.5000",
    "currency": "credits",
    "updated_at": "2026-11-24T12:00:00Z",
}


async def test_headers_on_a_post(server: FakeServer, gw: Gateway) -> None:
    """A POST carries the key, our User-Agent, JSON content type and an Idempotency-Key."""
    server.on("POST", "/api/runs", reply(200, RUN))
    await gw.runs.create(model="demo-echo", input={"x": 1})
    seen = server.seen[0]
    assert seen.headers["X-API-Key"] == TEST_KEY
    assert "Authorization" not in seen.headers
    major, minor, _ = platform.python_version_tuple()
    assert re.fullmatch(
        rf"gateway-async/\d+\.\d+\.\d+ python/{major}\.{minor} aiohttp/\d+\.\d+",
        seen.headers["User-Agent"],
    )
    assert seen.headers["Content-Type"] == "application/json"
    assert re.fullmatch(r"[0-9a-f]{32}", seen.headers["Idempotency-Key"])
    assert seen.json() == {"model": "demo-echo", "mode": "execute", "input": {"x": 1}}


async def test_get_carries_no_idempotency_key(server: FakeServer, gw: Gateway) -> None:
    """GETs are naturally idempotent and carry no key."""
    server.on("GET", "/api/billing/wallet", reply(200, WALLET))
    await gw.billing.wallet()
    assert "Idempotency-Key" not in server.seen[0].headers


async def test_access_token_sends_bearer_only(server: FakeServer) -> None:
    """With access_token the client sends Authorization: Bearer and never X-API-Key."""
    server.on("GET", "/api/billing/wallet", reply(200, WALLET))
    async with Gateway(access_token="browser-tok", base_url=server.url) as gw:
        await gw.billing.wallet()
    assert server.seen[0].headers["Authorization"] == "Bearer browser-tok"
    assert "X-API-Key" not in server.seen[0].headers


async def test_idempotency_key_is_reused_across_retries(server: FakeServer, gw: Gateway) -> None:
    """All attempts of one call share a key; separate calls get separate keys."""
    server.on("POST", "/api/runs", reply(503), reply(502), reply(200, RUN))
    await gw.runs.create(model="demo-echo", input={})
    server.on("POST", "/api/runs", reply(200, RUN))
    await gw.runs.create(model="demo-echo", input={})
    keys = [s.headers["Idempotency-Key"] for s in server.seen]
    assert len(keys) == 4
    assert keys[0] == keys[1] == keys[2]
    assert keys[3] != keys[0]


async def test_callers_idempotency_key_is_used(server: FakeServer, gw: Gateway) -> None:
    """A caller-chosen key goes on the wire unchanged."""
    server.on("POST", "/api/runs", reply(200, RUN))
    await gw.runs.create(model="demo-echo", input={}, idempotency_key="order-42")
    assert server.seen[0].headers["Idempotency-Key"] == "order-42"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_retryable_statuses_are_retried(server: FakeServer, gw: Gateway, status: int) -> None:
    """Each retryable status is tried again and the call then succeeds."""
    server.on("POST", "/api/runs", reply(status), reply(200, RUN))
    run = await gw.runs.create(model="demo-echo", input={})
    assert run.id == "run_1"
    assert len(server.seen) == 2


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 409, 410, 413, 422])
async def test_other_statuses_are_not_retried(server: FakeServer, gw: Gateway, status: int) -> None:
    """Client errors fail at once: retrying cannot change the answer."""
    server.on("POST", "/api/runs", reply(status, {"error": {"code": "x", "message": "m"}}))
    with pytest.raises(APIStatusError):
        await gw.runs.create(model="demo-echo", input={})
    assert len(server.seen) == 1


async def test_retries_stop_at_max_retries(server: FakeServer, gw: Gateway) -> None:
    """max_retries=2 means three attempts, then the last error surfaces."""
    server.on(
        "GET",
        "/api/billing/wallet",
        reply(503, {"error": {"code": "unavailable", "message": "down"}}),
    )
    with pytest.raises(ServerError, match="down") as info:
        await gw.billing.wallet()
    assert len(server.seen) == 3
    assert info.value.status_code == 503


async def test_max_retries_per_call(server: FakeServer, gw: Gateway) -> None:
    """A per-call max_retries overrides the client's."""
    server.on("POST", "/api/runs", reply(503))
    with pytest.raises(ServerError):
        await gw.runs.create(model="demo-echo", input={}, max_retries=0)
    assert len(server.seen) == 1


async def test_backoff_sleeps_are_jittered_within_bounds(server: FakeServer) -> None:
    """Waits between attempts follow full jitter under the cap."""
    policy = RetryPolicy(max_retries=4, base_delay=0.5, max_delay=1.5, rng=lambda: 1.0)
    server.on("GET", "/api/billing/wallet", reply(503))
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    async with Gateway(api_key=TEST_KEY, base_url=server.url, retry=policy) as gw:
        gw._transport.sleep = fake_sleep
        with pytest.raises(ServerError):
            await gw.billing.wallet()
    assert waits == [0.5, 1.0, 1.5, 1.5]


async def test_retry_after_is_honoured(server: FakeServer, gw: Gateway) -> None:
    """A 429's Retry-After is the wait, not the jittered backoff."""
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    gw._transport.sleep = fake_sleep
    server.on("POST", "/api/runs", reply(429, headers={"Retry-After": "7"}), reply(200, RUN))
    await gw.runs.create(model="demo-echo", input={})
    assert waits == [pytest.approx(7.0, abs=0.5)]


async def test_retry_after_beyond_the_cap_raises_rate_limit_error(
    server: FakeServer, gw: Gateway
) -> None:
    """A Retry-After of a year is not slept through: RateLimitError carries it."""
    server.on("POST", "/api/runs", reply(429, headers={"Retry-After": str(365 * 86400)}))
    with pytest.raises(RateLimitError) as info:
        await gw.runs.create(model="demo-echo", input={})
    assert info.value.retry_after == 365 * 86400
    assert len(server.seen) == 1


async def test_attempt_timeout_then_retry(server: FakeServer) -> None:
    """A hung attempt times out and the retry succeeds."""
    server.on("GET", "/api/billing/wallet", never(), reply(200, WALLET))
    timeouts = Timeouts(total=10, attempt=0.2)
    async with Gateway(
        api_key=TEST_KEY, base_url=server.url, timeout=timeouts, retry=no_wait_policy()
    ) as gw:
        wallet = await gw.billing.wallet()
    assert wallet.workspace_id == "ws_1"


async def test_total_deadline_covers_every_attempt(server: FakeServer, gw: Gateway) -> None:
    """timeout= bounds the whole call: a server that never answers fails fast."""
    server.on("GET", "/api/billing/wallet", never())
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(APITimeoutError) as info:
        await gw.billing.wallet(timeout=0.3)
    assert loop.time() - started < 2.0
    assert isinstance(info.value, TimeoutError)


async def test_deadline_stops_backoff_early(server: FakeServer) -> None:
    """A backoff that would pass the deadline is not slept: the last error surfaces."""
    policy = RetryPolicy(max_retries=5, base_delay=30, max_delay=30, rng=lambda: 1.0)
    server.on("GET", "/api/billing/wallet", reply(503))
    async with Gateway(api_key=TEST_KEY, base_url=server.url, retry=policy, timeout=2) as gw:
        with pytest.raises(ServerError):
            await gw.billing.wallet()
    assert len(server.seen) == 1


async def test_connection_refused_maps_to_connection_error() -> None:
    """Nothing listening: APIConnectionError after the retries."""
    sock_server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = sock_server.sockets[0].getsockname()[1]
    sock_server.close()
    await sock_server.wait_closed()
    async with Gateway(
        api_key=TEST_KEY, base_url=f"http://127.0.0.1:{port}", retry=no_wait_policy(1)
    ) as gw:
        with pytest.raises(APIConnectionError) as info:
            await gw.billing.wallet()
    assert TEST_KEY not in str(info.value)


async def test_truncated_json_is_retried(server: FakeServer, gw: Gateway) -> None:
    """A 200 with a cut-off body is retried (the idempotency key makes that safe)."""
    server.on("POST", "/api/runs", reply(200, raw=b'{"id": "run_1", "mo'), reply(200, RUN))
    run = await gw.runs.create(model="demo-echo", input={})
    assert run.id == "run_1"
    assert server.seen[0].headers["Idempotency-Key"] == server.seen[1].headers["Idempotency-Key"]


async def test_truncated_json_every_time_is_a_validation_error(
    server: FakeServer, gw: Gateway
) -> None:
    """If the body never parses, the error says so with status and request id."""
    server.on("POST", "/api/runs", reply(200, raw=b"{"))
    with pytest.raises(APIResponseValidationError, match="not valid JSON") as info:
        await gw.runs.create(model="demo-echo", input={})
    assert info.value.request_id == "req_test"


async def test_huge_body_is_refused(server: FakeServer, gw: Gateway) -> None:
    """A response over the size limit is not read into memory."""
    big = b"x" * (MAX_RESPONSE_BYTES + 1)

    async def huge(_: web.Request) -> web.StreamResponse:
        return web.Response(body=big, content_type="application/json")

    server.on("GET", "/api/billing/wallet", huge)
    with pytest.raises(APIResponseValidationError, match="larger than"):
        await gw.billing.wallet()


async def test_same_origin_redirect_is_followed(server: FakeServer, gw: Gateway) -> None:
    """A redirect within the Gateway's origin is followed with credentials."""
    server.on("GET", "/api/billing/wallet", reply(307, headers={"Location": "/api/v2/wallet"}))
    server.on("GET", "/api/v2/wallet", reply(200, WALLET))
    wallet = await gw.billing.wallet()
    assert wallet.balance == 12.5
    assert server.seen[1].headers["X-API-Key"] == TEST_KEY


async def test_cross_origin_redirect_is_not_followed(
    server: FakeServer, other_server: FakeServer, gw: Gateway
) -> None:
    """A redirect to another origin fails instead of sending the key there."""
    target = f"{other_server.url}/steal"
    server.on("GET", "/api/billing/wallet", reply(302, headers={"Location": target}))
    with pytest.raises(APIStatusError, match="not followed") as info:
        await gw.billing.wallet()
    assert info.value.code == "redirect_refused"
    assert other_server.seen == []


async def test_debug_logs_never_show_the_key(
    server: FakeServer, gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Debug logging names method, path and status, never the key, even when a caller logs it."""
    server.on("POST", "/api/runs", reply(503), reply(200, RUN))
    with caplog.at_level(logging.DEBUG, logger="gateway_async"):
        await gw.runs.create(model="demo-echo", input={})
        logging.getLogger("gateway_async").info("user logged %s", TEST_KEY)
    assert "POST /api/runs -> 200" in caplog.text
    assert "retry 1" in caplog.text
    assert TEST_KEY not in caplog.text
    assert "user logged ***" in caplog.text


async def test_use_after_close_is_a_clear_error(server: FakeServer) -> None:
    """A closed client says so instead of failing deep inside aiohttp."""
    gw = Gateway(api_key=TEST_KEY, base_url=server.url)
    await gw.aclose()
    with pytest.raises(Exception, match="closed"):
        await gw.billing.wallet()


async def test_caller_owned_session_is_not_closed(server: FakeServer) -> None:
    """session= is borrowed: the client uses it and leaves it open."""
    server.on("GET", "/api/billing/wallet", reply(200, WALLET))
    async with aiohttp.ClientSession() as session:
        async with Gateway(api_key=TEST_KEY, base_url=server.url, session=session) as gw:
            await gw.billing.wallet()
        assert not session.closed


@pytest.mark.parametrize("hooked", [False, True])
@pytest.mark.parametrize("borrowed", [False, True])
async def test_every_request_carries_the_same_headers_whoever_owns_the_session(
    server: FakeServer, borrowed: bool, hooked: bool
) -> None:
    """An owned session sends the constant headers as its defaults (cheaper per request), a
    borrowed one gets them on each request: the Gateway sees the same either way, and a
    borrowed session is left without the key for the caller's other requests."""
    server.on("POST", "/api/runs", reply(200, RUN))
    server.on("GET", "/api/billing/wallet", reply(200, WALLET))
    async with aiohttp.ClientSession() as session:
        options: dict[str, Any] = {"session": session} if borrowed else {}
        seen_by_hook: list[Any] = []
        if hooked:  # the observed path: hooks see every header, the wire gets each once
            options["event_hooks"] = {"request": [seen_by_hook.append]}
        async with Gateway(api_key=TEST_KEY, base_url=server.url, **options) as gw:
            await gw.runs.create(model="demo-echo", input={"i": 1})
            await gw.billing.wallet()
        assert "X-API-Key" not in session.headers
    post, get = server.seen
    for seen in (post, get):
        assert seen.headers["X-API-Key"] == TEST_KEY
        assert seen.headers["User-Agent"].startswith("gateway-async/")
        assert seen.headers["Accept"] == "application/json"
        assert seen.headers.getall("X-API-Key") == [TEST_KEY]  # never twice
    assert post.headers["Content-Type"] == "application/json"
    assert len(post.headers["Idempotency-Key"]) == 32
    assert "Content-Type" not in get.headers
    assert "Idempotency-Key" not in get.headers
    for info in seen_by_hook:
        assert info.headers["X-API-Key"] == "[redacted]"
        assert info.headers["User-Agent"].startswith("gateway-async/")
    assert len(seen_by_hook) == (2 if hooked else 0)


def test_second_event_loop_is_refused(server_url: str) -> None:
    """Using a client from another loop raises a clear error instead of hanging."""
    from gateway_async import ConfigurationError

    gw = Gateway(api_key=TEST_KEY, base_url=server_url, max_retries=0)

    async def first() -> None:
        with pytest.raises(APIConnectionError):
            await gw.billing.wallet()

    async def second() -> Any:
        with pytest.raises(ConfigurationError, match="event loop"):
            await gw.billing.wallet()

    loop1 = asyncio.new_event_loop()
    try:
        loop1.run_until_complete(first())
        asyncio.run(second())
        loop1.run_until_complete(gw.aclose())
    finally:
        loop1.close()


@pytest.fixture
def server_url() -> str:
    """A loopback URL where nothing listens (the test only needs the loop checks)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_thousands_of_concurrent_calls_share_one_client(
    server: FakeServer, gw: Gateway
) -> None:
    """One client serves 2,000 concurrent tasks."""
    server.on("GET", "/api/billing/wallet", reply(200, WALLET))
    wallets = await asyncio.gather(*(gw.billing.wallet() for _ in range(2000)))
    assert len(wallets) == 2000
    assert {w.workspace_id for w in wallets} == {"ws_1"}


async def test_caller_cancellation_is_not_mistaken_for_a_timeout(
    server: FakeServer, gw: Gateway
) -> None:
    """Cancelling the calling task cancels the call; it does not become APITimeoutError."""
    arrived = asyncio.Event()

    async def hang(_: web.Request) -> web.StreamResponse:
        arrived.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    server.on("GET", "/api/billing/wallet", hang)
    task = asyncio.create_task(gw.billing.wallet())
    await arrived.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_task_is_usable_after_an_attempt_timeout(server: FakeServer) -> None:
    """A timed-out call leaves the calling task un-cancelled: it can await again."""
    server.on("GET", "/api/billing/wallet", never(), reply(200, WALLET))
    timeouts = Timeouts(total=5, attempt=0.1)
    async with Gateway(
        api_key=TEST_KEY, base_url=server.url, timeout=timeouts, max_retries=0
    ) as gw:
        with pytest.raises(APITimeoutError):
            await gw.billing.wallet()
        current = asyncio.current_task()
        assert current is not None
        assert current.cancelling() == 0
        wallet = await gw.billing.wallet()
    assert wallet.workspace_id == "ws_1"


async def test_many_attempts_with_different_deadlines_expire_independently(
    server: FakeServer,
) -> None:
    """One watch serves every in-flight attempt: short ones expire, long ones succeed."""

    async def slow(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.3)  # the server is slow on purpose; the client decides
        return web.json_response(WALLET)

    server.on("GET", "/api/billing/wallet", slow)
    async with Gateway(api_key=TEST_KEY, base_url=server.url, max_retries=0) as gw:
        short = [gw.billing.wallet(timeout=Timeouts(total=5, attempt=0.05)) for _ in range(5)]
        long = [gw.billing.wallet(timeout=Timeouts(total=5, attempt=5)) for _ in range(5)]
        results = await asyncio.gather(*short, *long, return_exceptions=True)
    assert all(isinstance(r, APITimeoutError) for r in results[:5])
    assert all(getattr(r, "workspace_id", None) == "ws_1" for r in results[5:])

"""Seeded fault injection (503, 429, latency, reset, truncated JSON, mid-body reset on
PUT), the compact fault syntax, and the per-key rate limit."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from gateway_async.emulator import Emulator, Faults, FaultSpec, RateLimit
from gateway_async.emulator._faults import FaultInjector
from tests.conftest import wait_until

from .conftest import Api, FakeClock

ECHO = {"model": "demo-echo", "input": {"a": 1}}


def on_runs(**spec: object) -> Faults:
    return Faults(seed=3, routes={"POST /api/runs": FaultSpec(**spec)})  # type: ignore[arg-type]


async def test_503_before_executing(api: Api, emu: Emulator) -> None:
    emu.set_faults(on_runs(error_503=1.0))
    reply = await api.run(**ECHO)
    assert (reply.status, reply.body["error"]["code"]) == (503, "unavailable")
    assert "X-Request-Id" in reply.headers
    assert (await api.get("/api/billing/wallet")).status == 200
    assert emu.stats.executions == 0
    assert emu.stats.faults_injected["503"] == 1


async def test_429_carries_retry_after(api: Api, emu: Emulator) -> None:
    emu.set_faults(on_runs(error_429=1.0, retry_after=3))
    reply = await api.run(**ECHO)
    assert (reply.status, reply.headers["Retry-After"]) == (429, "3")
    assert reply.body["error"]["code"] == "rate_limited"
    assert emu.stats.executions == 0


async def test_star_is_the_fallback(api: Api, emu: Emulator) -> None:
    spec = FaultSpec(error_503=1.0)
    emu.set_faults(Faults(routes={"*": spec, "POST /api/runs": FaultSpec()}))
    assert (await api.run(**ECHO)).status == 200
    assert (await api.get("/api/marketplace/models/demo-echo")).status == 503


async def test_latency(api: Api, emu: Emulator) -> None:
    emu.set_faults(on_runs(latency=(0.05, 0.05)))
    started = time.perf_counter()
    assert (await api.run(**ECHO)).status == 200
    assert time.perf_counter() - started >= 0.05
    assert emu.stats.faults_injected["latency"] == 1


async def test_close_does_not_wait_out_a_request_held_by_latency() -> None:
    """A request held by a 30 s latency fault is cancelled SHUTDOWN_GRACE after close():
    close() returns in about a second (aiohttp alone would wait up to 60 s), and the client
    sees its connection end instead of hanging."""
    from gateway_async.emulator._emulator import SHUTDOWN_GRACE

    emu = Emulator(faults=Faults(seed=1, routes={"*": FaultSpec(latency=(30, 30))}))
    await emu.start()
    async with aiohttp.ClientSession() as session:
        held = asyncio.ensure_future(
            session.get(f"{emu.base_url}/api/billing/wallet", headers={"X-API-Key": emu.api_key})
        )
        injected = emu.stats.faults_injected
        await wait_until(lambda: injected["latency"] == 1, "the handler to sleep", 10)
        started = time.monotonic()
        await asyncio.wait_for(emu.close(), 10 * SHUTDOWN_GRACE)
        assert time.monotonic() - started < 10 * SHUTDOWN_GRACE
        with pytest.raises(aiohttp.ClientError):
            await asyncio.wait_for(held, 10)


async def test_resets_before_and_after_execution_are_seeded(api: Api, emu: Emulator) -> None:
    faults = on_runs(reset=1.0)
    injector = FaultInjector(faults)
    expected = [injector.decide("POST /api/runs").reset for _ in range(12)]
    assert {"before", "after"} <= set(expected)
    emu.set_faults(faults)
    for i in range(12):
        with pytest.raises(aiohttp.ClientError):
            await api.post("/api/runs", ECHO, headers={"Idempotency-Key": f"r{i}"})
    executed = [emu.stats.executions_by_idempotency_key[f"r{i}"] for i in range(12)]
    assert executed == [int(when == "after") for when in expected]
    assert emu.stats.faults_injected["reset"] == 12
    emu.set_faults(None)
    for i in range(12):
        await api.post("/api/runs", ECHO, headers={"Idempotency-Key": f"r{i}"})
    assert all(emu.stats.executions_by_idempotency_key[f"r{i}"] == 1 for i in range(12))


async def test_truncated_json_after_executing(api: Api, emu: Emulator) -> None:
    emu.set_faults(on_runs(truncated_json=1.0))
    key = {"Idempotency-Key": "t"}
    cut = await api.post("/api/runs", ECHO, headers=key)
    assert cut.status == 200
    assert cut.body is None
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.text)
    emu.set_faults(None)
    whole = await api.post("/api/runs", ECHO, headers=key)
    assert whole.headers["Idempotent-Replayed"] == "true"
    assert len(cut.text) == len(whole.text) // 2
    assert whole.text.startswith(cut.text)
    assert emu.stats.executions == 1
    assert emu.stats.faults_injected["truncated_json"] == 1


async def test_same_seed_same_faults(session: aiohttp.ClientSession) -> None:
    faults = Faults(seed=11, routes={"*": FaultSpec(error_503=0.5)})
    runs = []
    for _ in range(2):
        async with Emulator(faults=faults) as emu:
            api = Api(session, emu)
            runs.append([(await api.get("/api/billing/wallet")).status for _ in range(16)])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 503}


async def test_storage_reset_mid_body_stores_nothing(api: Api, emu: Emulator) -> None:
    data = b"x" * 600_000
    ticket = await api.init(data)
    emu.set_faults(Faults(routes={"PUT /storage": FaultSpec(reset=1.0)}))
    with pytest.raises(aiohttp.ClientError):
        await api.put(ticket, data)
    assert emu.stats.faults_injected["reset"] >= 1
    assert (
        await api.post("/api/media/upload/complete", {"upload_id": ticket["upload_id"]})
    ).status == 409
    emu.set_faults(Faults(routes={"PUT /storage": FaultSpec(error_503=1.0)}))
    assert (await api.put(ticket, data)).status == 503
    emu.set_faults(None)
    assert (await api.put(ticket, data)).status == 200


def test_parse_compact_syntax() -> None:
    faults = Faults.parse(
        "503=0.1, 429=0.05,reset=0.02,truncated=0.01,latency=0-0.02,seed=7,retry_after=2"
    )
    assert faults.seed == 7
    assert faults.routes == {
        "*": FaultSpec(
            error_503=0.1,
            error_429=0.05,
            retry_after=2,
            latency=(0.0, 0.02),
            reset=0.02,
            truncated_json=0.01,
        )
    }
    assert Faults.parse("latency=0.5").routes["*"].latency == (0.5, 0.5)
    assert Faults.parse("") == Faults(routes={"*": FaultSpec()})


@pytest.mark.parametrize("text", ["503", "503=2", "boom=0.1", "seed=x", "latency=a-b"])
def test_parse_refuses_bad_syntax(text: str) -> None:
    with pytest.raises(ValueError, match="bad fault"):
        Faults.parse(text)


async def test_rate_limit_per_key(session: aiohttp.ClientSession, clock: FakeClock) -> None:
    limit = RateLimit(rate=0.5, burst=2)
    async with Emulator(rate_limit=limit, clock=clock, api_keys=("a", "b")) as emu:
        api = Api(session, emu)
        api.auth = {"X-API-Key": "a"}
        statuses = [(await api.run(**ECHO)).status for _ in range(3)]
        assert statuses == [200, 200, 429]
        limited = await api.run(**ECHO)
        assert (limited.headers["Retry-After"], limited.body["error"]["code"]) == (
            "2",
            "rate_limited",
        )
        api.auth = {"X-API-Key": "b"}
        assert (await api.run(**ECHO)).status == 200
        api.auth = {"X-API-Key": "a"}
        clock.advance(2)
        assert (await api.run(**ECHO)).status == 200
        assert (emu.stats.executions, emu.stats.rate_limited) == (4, 2)


async def test_rate_limit_retry_after_override(
    session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    limit = RateLimit(rate=100, burst=1, retry_after=7)
    async with Emulator(rate_limit=limit, clock=clock) as emu:
        api = Api(session, emu)
        assert (await api.get("/api/billing/wallet")).status == 200
        assert (await api.get("/api/billing/wallet")).headers["Retry-After"] == "7"


def test_rate_limit_needs_positive_values() -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        RateLimit(rate=0, burst=1)

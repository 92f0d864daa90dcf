"""Idempotency-Key: replay without executing or charging, 409 on another body, one
execution for concurrent duplicates, and the same for upload init and complete."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from gateway_async.emulator import Emulator

from .conftest import Api, FakeClock

ECHO = {"model": "demo-echo", "input": {"a": 1, "b": [1, 2]}}


async def test_replay_returns_the_first_response_without_charging(api: Api, emu: Emulator) -> None:
    key = {"Idempotency-Key": "k-1"}
    first = await api.post("/api/runs", ECHO, headers=key)
    reordered = {"input": {"b": [1, 2], "a": 1}, "model": "demo-echo"}
    second = await api.post("/api/runs", reordered, headers=key)
    assert (first.status, second.status) == (200, 200)
    assert second.body == first.body
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["X-Request-Id"] != first.headers["X-Request-Id"]
    assert emu.stats.executions_by_idempotency_key == {"k-1": 1}
    assert (emu.stats.charges, emu.stats.replays) == (1, 1)
    assert emu.core.state.balance == Decimal("99.9990")


async def test_same_key_with_another_body_is_409(api: Api, emu: Emulator) -> None:
    key = {"Idempotency-Key": "k-2"}
    assert (await api.post("/api/runs", ECHO, headers=key)).status == 200
    other = await api.post("/api/runs", {**ECHO, "input": {"a": 2}}, headers=key)
    assert (other.status, other.body["error"]["code"]) == (409, "conflict")
    assert emu.stats.executions == 1


async def test_keys_are_separate_per_api_key(session: object) -> None:
    async with Emulator(api_keys=("one", "two")) as emu:
        api = Api(session, emu)  # type: ignore[arg-type]
        for key in ("one", "two"):
            api.auth = {"X-API-Key": key}
            reply = await api.post("/api/runs", ECHO, headers={"Idempotency-Key": "shared"})
            assert "Idempotent-Replayed" not in reply.headers
        assert emu.stats.executions_by_idempotency_key["shared"] == 2


async def test_concurrent_duplicates_execute_once(api: Api, emu: Emulator) -> None:
    key = {"Idempotency-Key": "k-3"}
    replies = await asyncio.gather(*(api.post("/api/runs", ECHO, headers=key) for _ in range(8)))
    assert {r.body["id"] for r in replies} == {replies[0].body["id"]}
    assert sum("Idempotent-Replayed" in r.headers for r in replies) == 7
    assert emu.stats.executions_by_idempotency_key["k-3"] == 1
    assert len(emu.core.idempotency._locks) == 0


async def test_errors_are_not_remembered(api: Api, emu: Emulator) -> None:
    key = {"Idempotency-Key": "k-4"}
    emu.set_balance(Decimal(0))
    assert (await api.post("/api/runs", ECHO, headers=key)).status == 402
    emu.set_balance(Decimal(1))
    retry = await api.post("/api/runs", ECHO, headers=key)
    assert retry.status == 200
    assert "Idempotent-Replayed" not in retry.headers


async def test_records_expire_after_24_hours(api: Api, emu: Emulator, clock: FakeClock) -> None:
    key = {"Idempotency-Key": "k-5"}
    await api.post("/api/runs", ECHO, headers=key)
    clock.advance(24 * 3600 + 1)
    assert "Idempotent-Replayed" not in (await api.post("/api/runs", ECHO, headers=key)).headers
    assert emu.stats.executions_by_idempotency_key["k-5"] == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
async def test_bad_keys_are_422(api: Api, key: str) -> None:
    reply = await api.post("/api/runs", ECHO, headers={"Idempotency-Key": key})
    assert reply.status == 422
    assert reply.body["error"]["details"] == {"field": "Idempotency-Key"}


async def test_upload_init_and_complete_replay(api: Api, emu: Emulator) -> None:
    init = {"filename": "a.txt", "content_type": "text/plain", "size": 3}
    key = {"Idempotency-Key": "init-1"}
    first = await api.post("/api/media/upload/init", init, headers=key)
    second = await api.post("/api/media/upload/init", init, headers=key)
    assert (first.status, second.status) == (201, 201)
    assert second.body["upload_id"] == first.body["upload_id"]
    assert emu.stats.uploads_initiated == 1
    await api.put(first.body, b"abc")
    done = {"upload_id": first.body["upload_id"]}
    key = {"Idempotency-Key": "complete-1"}
    one = await api.post("/api/media/upload/complete", done, headers=key)
    two = await api.post("/api/media/upload/complete", done, headers=key)
    assert two.body == one.body
    assert two.headers["Idempotent-Replayed"] == "true"

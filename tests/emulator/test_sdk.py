"""The SDK against the emulator over real sockets: every endpoint, the server's own answers
to bad runs (client-side checks bypassed), replay, 402, rate limits, faults and restarts."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from gateway_async import (
    APIStatusError,
    ConflictError,
    Gateway,
    InsufficientFundsError,
    NotFoundError,
    RetryPolicy,
    RunRequest,
    UnprocessableEntityError,
)
from gateway_async.emulator import Emulator, Faults, RateLimit

from .conftest import FakeClock
from .test_runs import INVALID

QUICK = RetryPolicy(max_retries=8, base_delay=0.0, max_delay=0.0)


@pytest_asyncio.fixture
async def gw(emu: Emulator) -> AsyncIterator[Gateway]:
    async with emu.client(retry=QUICK) as client:
        yield client


async def test_every_endpoint_through_the_sdk(emu: Emulator, gw: Gateway) -> None:
    echo = await gw.runs.create(model="demo-echo", input={"a": 1})
    assert (echo.status, echo.output) == ("succeeded", {"a": 1})
    texts = ["red apples", "green pears", "a blue whale"]
    indexed = await gw.runs.create_many(
        RunRequest(model="demo-text-embed", mode="index", scope="t", input={"text": t})
        for t in texts
    )
    assert all(r.status == "succeeded" for r in indexed if not isinstance(r, Exception))
    found = await gw.runs.create(
        model="demo-text-embed", mode="search", scope="t", input={"text": "a blue whale"}
    )
    assert found.output is not None
    assert found.output["matches"][0]["score"] == pytest.approx(1.0, abs=1e-6)

    slugs = [m.slug async for m in gw.marketplace.list_models(page_size=1)]  # page per model
    assert {"demo-echo", "demo-text-embed", "demo-image-embed"} <= set(slugs)
    model = await gw.marketplace.get_model("demo-image-embed")
    assert model.price_per_run == Decimal("0.0010")
    with pytest.raises(NotFoundError):
        await gw.marketplace.get_model("no-such-model")

    wallet = await gw.billing.wallet()
    assert wallet.balance == Decimal("100.0000") - 5 * Decimal("0.0010")
    usage = await gw.billing.usage_summary()
    assert (usage.total_runs, usage.total_credits) == (5, Decimal("0.0050"))
    assert {u.model: u.runs for u in usage.by_model} == {"demo-echo": 1, "demo-text-embed": 4}


@pytest.mark.parametrize(("name", "body", "status", "field"), INVALID, ids=[c[0] for c in INVALID])
async def test_the_servers_answer_to_each_bad_run(
    gw: Gateway, name: str, body: dict[str, Any], status: int, field: str
) -> None:
    """The SDK's own checks bypassed: the emulator's error still maps to its typed class."""
    expected = NotFoundError if status == 404 else UnprocessableEntityError
    with pytest.raises(expected) as info:
        await gw._transport.request("POST", "/api/runs", body=body, max_retries=0)
    assert info.value.status_code == status
    assert info.value.request_id
    assert info.value.details.get("field") == field


async def test_replay_returns_the_same_run_and_a_different_body_conflicts(
    emu: Emulator, gw: Gateway
) -> None:
    first = await gw.runs.create(model="demo-echo", input={"a": 1}, idempotency_key="k-1")
    again = await gw.runs.create(model="demo-echo", input={"a": 1}, idempotency_key="k-1")
    assert again.id == first.id
    with pytest.raises(ConflictError):
        await gw.runs.create(model="demo-echo", input={"a": 2}, idempotency_key="k-1")
    assert (emu.stats.executions, emu.stats.charges, emu.stats.replays) == (1, 1, 1)


async def test_an_empty_wallet_is_a_402(emu: Emulator, gw: Gateway) -> None:
    emu.set_balance(Decimal("0.0005"))
    with pytest.raises(InsufficientFundsError) as info:
        await gw.runs.create(model="demo-echo", input={"a": 1})
    assert info.value.status_code == 402
    assert emu.stats.charges == 0


async def test_rate_limits_are_waited_out_with_retry_after(clock: FakeClock) -> None:
    """Retry-After (1 s here) is honoured: the client's waits move the emulator's clock."""
    waits: list[float] = []

    async def wait_on_the_fake_clock(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    async with (
        Emulator(clock=clock, rate_limit=RateLimit(rate=5.0, burst=2)) as emu,
        emu.client(retry=QUICK) as gw,
    ):
        gw._transport.sleep = wait_on_the_fake_clock
        requests = (RunRequest(model="demo-echo", input={"i": i}) for i in range(10))
        results = await gw.runs.create_many(requests, concurrency=4)
        assert all(not isinstance(r, Exception) for r in results), results
        assert emu.stats.rate_limited > 0
        assert emu.stats.executions == 10
    assert waits
    assert all(w <= 1.0 for w in waits)


@pytest.mark.parametrize(
    ("kind", "counter"),
    [
        ("503", "503"),
        ("429", "429"),
        ("reset", "reset"),
        ("truncated", "truncated_json"),
        ("latency", "latency"),
    ],
)
async def test_each_fault_kind_is_survived_exactly_once(kind: str, counter: str) -> None:
    probability = "0-0.005" if kind == "latency" else "0.4"
    faults = Faults.parse(f"{kind}={probability},seed=11,retry_after=0")
    async with Emulator(faults=faults) as emu, emu.client(retry=QUICK) as gw:
        requests = (RunRequest(model="demo-echo", input={"i": i}) for i in range(30))
        results = await gw.runs.create_many(requests, concurrency=6)
        assert all(not isinstance(r, Exception) for r in results), results
        assert emu.stats.faults_injected[counter] > 0
        assert emu.stats.executions == emu.stats.charges == 30
        assert set(emu.stats.executions_by_idempotency_key.values()) == {1}


async def test_an_upload_expired_at_complete_is_initialised_again(
    clock: FakeClock, emu: Emulator, gw: Gateway
) -> None:
    data = b"x" * 4096

    def expire_on_the_last_byte(event: Any) -> None:
        if event.bytes_sent == event.total and emu.stats.uploads_initiated == 1:
            clock.advance(3600)  # past the 900 s upload TTL before complete arrives

    ref = await gw.media.upload(data, filename="x.bin", on_progress=expire_on_the_last_byte)
    assert emu.stats.uploads_initiated == 2
    assert emu.media_path(ref.media_ref).read_bytes() == data


async def test_state_survives_a_restart_with_a_data_dir(tmp_path: Path) -> None:
    data = bytes(range(256)) * 64
    async with Emulator(data_dir=tmp_path) as emu, emu.client() as gw:
        ref = await gw.media.upload(data, filename="p.bin")
        await gw.runs.create(
            model="demo-text-embed", mode="index", scope="s", input={"text": "kept"}
        )
    async with Emulator(data_dir=tmp_path) as emu, emu.client() as gw:
        assert hashlib.sha256(emu.media_path(ref.media_ref).read_bytes()).hexdigest() == ref.sha256
        found = await gw.runs.create(
            model="demo-text-embed", mode="search", scope="s", input={"text": "kept"}
        )
        assert found.output is not None
        assert len(found.output["matches"]) == 1
        wallet = await gw.billing.wallet()
        assert wallet.balance == Decimal("99.9980")  # the index before, the search now


async def test_status_errors_carry_code_and_request_id(gw: Gateway) -> None:
    with pytest.raises(APIStatusError) as info:
        await gw.runs.create(model="no-such-model", input={"a": 1})
    assert info.value.status_code == 404
    assert info.value.code == "not_found"
    assert info.value.request_id

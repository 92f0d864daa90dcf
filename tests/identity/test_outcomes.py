"""One outcome rule for the budget, the journal and the item: a call is executed, not
executed (refused before the request, or answered so that nothing can have run), or
unknown (anything else once the request may have reached the Gateway). Issue #20, defect 6."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from gateway_async import RateLimitError, RetryPolicy
from gateway_async._errors import executed_outcome
from gateway_async.emulator import Emulator
from gateway_async.emulator._faults import Decision
from gateway_async.emulator._png import encode

MODEL, SCOPE, RUNS = "demo-image-embed", "test", "POST /api/runs"
NO_WAIT = RetryPolicy(max_retries=2, base_delay=0.0, max_delay=0.0)


def script(emu: Emulator, monkeypatch: pytest.MonkeyPatch, route: str, *steps: Decision) -> None:
    """The next requests on ``route`` meet ``steps`` in order; then no faults."""
    queue = list(steps)
    decide: Callable[[str], Decision] = emu.core.faults.decide

    def scripted(seen: str) -> Decision:
        return queue.pop(0) if seen == route and queue else decide(seen)

    monkeypatch.setattr(emu.core.faults, "decide", scripted)


def images(tmp_path: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(encode(2, 2, bytes([i]) * 12))
    return paths


async def test_a_lost_reply_whose_retry_meets_a_429_counts_as_spent(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt executed (charged) and its reply was lost; the same-key retry got
    ``429 Retry-After: 3600``. That answer proves nothing about the first attempt: the run
    is unknown, so it counts as spent, the cap holds, and the item's error says so."""
    script(emu, monkeypatch, RUNS, Decision(reset="after"), Decision(status=429, retry_after=3600))
    async with emu.client(retry=NO_WAIT) as gw:
        ingest = gw.ingest(
            images(tmp_path, 2),
            model=MODEL,
            scope=SCOPE,
            max_spend=Decimal("0.0015"),
            run_concurrency=1,
            ordered=True,
        )
        items = await asyncio.wait_for(_all(ingest), 30)
    assert emu.stats.charged_total == Decimal("0.0010")  # was 0.0020 past the 0.0015 cap
    first, second = items
    assert isinstance(first.error, RateLimitError)
    assert first.error.after_unknown_attempt
    assert "may have executed" in str(first.error)
    assert executed_outcome(first.error) == "unknown"
    assert second.error is not None
    assert "max_spend" in str(second.error)


async def _all(ingest: object) -> list[object]:
    return [item async for item in ingest]  # type: ignore[attr-defined]


async def test_a_429_to_a_first_attempt_is_still_not_executed(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seam on the other side: a 429 that answers the only attempt proves nothing ran."""
    script(emu, monkeypatch, RUNS, Decision(status=429, retry_after=3600))
    async with emu.client(retry=NO_WAIT) as gw:
        with pytest.raises(RateLimitError) as info:
            await gw.runs.create(model="demo-echo", input={"a": 1})
    assert not info.value.after_unknown_attempt
    assert executed_outcome(info.value) == "not executed"
    assert emu.stats.executions == 0


async def test_a_replay_answering_a_retry_of_a_lost_reply_is_this_calls_execution(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt executed and its reply was lost; the retry's answer is the replay of
    that attempt. It ran within this call, so ``replayed`` is False (a budget that treats a
    replay as free would otherwise miss a charge); a later call with the key is a replay."""
    script(emu, monkeypatch, RUNS, Decision(reset="after"))
    async with emu.client(retry=NO_WAIT) as gw:
        first = await gw.runs.create(model="demo-echo", input={"i": 1}, idempotency_key="k-lost")
        again = await gw.runs.create(model="demo-echo", input={"i": 1}, idempotency_key="k-lost")
    assert emu.stats.executions == 1
    assert (first.replayed, again.replayed) == (False, True)


async def test_a_replay_of_another_ingests_run_costs_this_ingest_nothing(
    emu: Emulator, tmp_path: Path
) -> None:
    """Two ingests sharing one open journal over the same files: the server charges each run
    once, and the two summaries add up to what it charged (they claimed twice that)."""
    from gateway_async.pipeline import Journal

    files = images(tmp_path, 6)
    async with emu.client() as gw, await Journal.open(tmp_path / "j.db") as journal:

        async def one() -> Decimal:
            async with gw.ingest(files, model=MODEL, scope=SCOPE, journal=journal) as ingest:
                async for _ in ingest:
                    pass
            return ingest.summary.credits

        spent = await asyncio.wait_for(asyncio.gather(one(), one()), 60)
    assert emu.stats.executions == len(files)
    assert sum(spent) == emu.stats.charged_total == Decimal("0.0060")

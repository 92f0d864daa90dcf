"""Regression tests of issue 12: the ingest keeps its promises under odd answers.

No hangs on a failing source, no double charge on resume or rerun (write-ahead identity),
``max_spend`` a real cap when replies are lost, and one long ``Retry-After`` failing its
item instead of pausing the whole client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway_async import APIConnectionError, Gateway, InvalidRequestError, RateLimitError
from gateway_async.emulator import Emulator, Faults, FaultSpec
from gateway_async.pipeline import BudgetExhaustedError, IngestItem

from .conftest import MakeFiles, leftover_tasks

MODEL, SCOPE = "demo-image-embed", "test"
RUNS = "POST /api/runs"
GUARD = 20.0  # seconds: a hang fails the test instead of the suite


async def collect(gw: Gateway, sources: Any, **options: Any) -> list[IngestItem]:
    options = {"model": MODEL, "scope": SCOPE, **options}
    return await asyncio.wait_for(_collect(gw, sources, options), GUARD)


async def _collect(gw: Gateway, sources: Any, options: dict[str, Any]) -> list[IngestItem]:
    return [item async for item in gw.ingest(sources, **options)]


def lose_run_replies(emu: Emulator) -> None:
    """Every run executes (and is charged), and its answer never arrives."""
    emu.set_faults(Faults(routes={RUNS: FaultSpec(lost_reply=1.0)}))


# -- defect 1: a source iterator that fails while uploads are queued ---------------------


class SourceBroke(Exception):
    pass


def failing_sync(paths: list[Path]) -> Iterator[Path]:
    yield from paths
    raise SourceBroke("the listing failed")


async def failing_async(paths: list[Path]) -> AsyncIterator[Path]:
    for path in paths:
        yield path
    raise SourceBroke("the listing failed")


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_source_that_fails_while_uploads_are_queued_raises_and_ends(
    emu: Emulator, gw: Gateway, make_files: MakeFiles, kind: str
) -> None:
    """Slow PUTs keep the upload queue full when the source raises: the ingest yields what
    finished, then raises the source's error, and leaves no task behind (it used to hang)."""
    emu.set_faults(Faults(routes={"PUT /storage": FaultSpec(latency=(0.02, 0.02))}))
    paths = make_files(6)
    sources = failing_sync(paths) if kind == "sync" else failing_async(paths)
    seen: list[IngestItem] = []

    async def consume() -> None:
        ingest = gw.ingest(sources, model=MODEL, scope=SCOPE, upload_concurrency=1)
        async for item in ingest:
            seen.append(item)

    with pytest.raises(SourceBroke, match="listing failed"):
        await asyncio.wait_for(consume(), GUARD)
    assert all(item.ok for item in seen)
    assert emu.stats.executions == len(seen)
    assert not leftover_tasks()


# -- defects 2 and 3: write-ahead identity, no double charge -------------------------------


async def test_identical_files_whose_replies_were_lost_execute_once_each_over_resumes(
    emu: Emulator, make_files: MakeFiles, tmp_path: Path
) -> None:
    """Two files, same bytes: one identity (issue #20), whose run executed with its replies
    lost: two resumes later there is still exactly one execution and no ConflictError."""
    files = make_files(2, content=b"twin bytes")
    journal = tmp_path / "j.db"
    async with emu.client(max_retries=0) as gw:
        lose_run_replies(emu)
        first = await collect(gw, files, journal=journal)
        assert all(isinstance(item.error, APIConnectionError) for item in first)
        assert emu.stats.executions == 1
        emu.set_faults(None)
        resumed = await collect(gw, files, journal=journal)
        again = await collect(gw, files, journal=journal)
    assert [item.error for item in resumed] == [None, None]
    assert all(item.ok for item in resumed)
    assert sorted(item.skipped for item in resumed) == [False, True]
    assert all(item.skipped for item in again)
    assert (emu.stats.executions, emu.stats.charges) == (1, 1)
    assert set(emu.stats.executions_by_idempotency_key.values()) == {1}
    assert emu.stats.replays >= 1  # the resume re-sent the body under its key


async def test_the_same_bytes_twice_run_once_and_a_rerun_runs_nothing(
    emu: Emulator, gw: Gateway, tmp_path: Path
) -> None:
    """``[blob, bytes(blob)]`` is one source to the journal: one run, no ConflictError, and
    a rerun of the finished ingest executes nothing (it used to charge again)."""
    blob = b"one blob of bytes"
    journal = tmp_path / "j.db"
    first = await collect(gw, [blob, bytearray(blob)], journal=journal)
    assert [item.error for item in first] == [None, None]
    assert sorted(item.skipped for item in first) == [False, True]
    assert emu.stats.executions == 1
    again = await collect(gw, [blob, bytearray(blob)], journal=journal)
    assert all(item.skipped and item.ok for item in again)
    assert (emu.stats.executions, emu.stats.charges) == (1, 1)


# -- defect 4: max_spend is a cap even when every reply is lost ----------------------------


async def test_max_spend_holds_when_every_reply_is_lost(
    emu: Emulator, make_files: MakeFiles
) -> None:
    """A run of unknown outcome counts as spent: 0.0030 at 0.0010 a run executes at most
    three runs, not forty."""
    lose_run_replies(emu)
    async with emu.client(max_retries=0) as gw:
        ingest = gw.ingest(make_files(40), model=MODEL, scope=SCOPE, max_spend=Decimal("0.0030"))
        items = await asyncio.wait_for(_drain(ingest), GUARD)
    assert emu.stats.charged_total <= Decimal("0.0030")
    assert emu.stats.executions <= 3
    sent = [item for item in items if not isinstance(item.error, BudgetExhaustedError)]
    assert len(sent) <= 3
    assert all(isinstance(item.error, APIConnectionError) for item in sent)
    assert ingest.summary.stopped == "budget"


async def _drain(ingest: AsyncIterator[IngestItem]) -> list[IngestItem]:
    return [item async for item in ingest]


# -- defect 5: one long Retry-After fails its item and pauses nothing -----------------------


async def test_a_long_retry_after_fails_the_item_and_pauses_nothing(
    emu: Emulator, make_files: MakeFiles
) -> None:
    """``Retry-After: 3600`` (above ``max_retry_after``): the items fail with RateLimitError
    carrying it, and the client's next call goes straight out (it used to wait an hour)."""
    emu.set_faults(Faults(routes={RUNS: FaultSpec(error_429=1.0, retry_after=3600)}))
    async with emu.client() as gw:
        items = await collect(gw, make_files(3))
        wallet = await asyncio.wait_for(gw.billing.wallet(), GUARD)
    errors = [item.error for item in items]
    assert all(isinstance(e, RateLimitError) and e.retry_after == 3600 for e in errors)
    assert wallet.balance > 0
    assert emu.stats.requests_by_route[RUNS] == 3  # one answer each: nothing retried


async def test_a_short_retry_after_still_pauses_the_whole_client(
    emu: Emulator, make_files: MakeFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most ``max_retry_after``, a 429 that reaches the ingest pauses the client for the
    asked time (recorded here, not slept) and the item is retried."""
    emu.set_faults(Faults(seed=4, routes={RUNS: FaultSpec(error_429=0.5, retry_after=30)}))
    pauses: list[float] = []
    async with emu.client(max_retries=0) as gw:
        monkeypatch.setattr(gw._transport, "pause", pauses.append)
        items = await collect(gw, make_files(6), run_concurrency=1)
    assert all(item.ok for item in items)
    assert pauses
    assert set(pauses) == {30}


# -- the written-ahead body is what the transport would send -------------------------------


async def test_a_journaled_body_keeps_media_refs_and_decimals_and_refuses_the_rest(
    emu: Emulator, gw: Gateway, make_files: MakeFiles, tmp_path: Path
) -> None:
    """``input=`` may hold the MediaRef itself and params a Decimal (as the transport sends
    them); something JSON cannot carry fails its item with InvalidRequestError naming the
    field, before anything is sent."""
    good, bad = make_files(2)

    def params(source: Path) -> dict[str, Any]:
        value: Any = Decimal("0.5") if source == good else object()
        return {"metadata": {"weight": value}}

    items = await collect(
        gw,
        [good, bad],
        journal=tmp_path / "j.db",
        input=lambda ref, src: {"image": ref},
        params=params,
    )
    by_source = {item.source: item for item in items}
    assert by_source[good].ok
    error = by_source[bad].error
    assert isinstance(error, InvalidRequestError)
    assert error.field == "params.metadata.weight"  # the RunRequest names the exact path
    assert emu.stats.executions == 1

"""``gw.ingest`` end to end against the in-process emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway_async import (
    Gateway,
    InsufficientFundsError,
    InvalidRequestError,
    MediaRef,
    PermissionDeniedError,
)
from gateway_async.emulator import Emulator, Faults, FaultSpec
from gateway_async.pipeline import BudgetExhaustedError, IngestEvent, IngestItem

from .conftest import MakeFiles, leftover_tasks, sha256_of

MODEL, SCOPE = "demo-image-embed", "test"


async def collect(gw: Gateway, sources: Any, **options: Any) -> list[IngestItem]:
    options = {"model": MODEL, "scope": SCOPE, **options}
    return [item async for item in gw.ingest(sources, **options)]


async def test_a_thousand_files_each_get_their_own_upload_and_run(
    emu: Emulator, gw: Gateway, make_files: MakeFiles
) -> None:
    """Every source comes back once, with the upload of its own bytes, indexed."""
    files = make_files(1000)
    ingest = gw.ingest(files, model=MODEL, scope=SCOPE)
    items = [item async for item in ingest]
    assert sorted(files) == sorted(item.source for item in items)
    for item in items:
        assert item.ok, item
        assert item.media_ref is not None
        assert sha256_of(item.source) == item.media_ref.sha256
        assert item.run is not None
        assert item.run.output["indexed"]
    summary = ingest.summary
    assert (
        summary.total,
        summary.uploaded,
        summary.succeeded,
        summary.failed,
    ) == (1000, 1000, 1000, 0)
    assert Decimal("1.0000") == summary.credits
    assert emu.stats.index_size(MODEL, SCOPE) == 1000
    assert {1} == set(emu.stats.executions_by_idempotency_key.values())


async def test_ordered_yields_in_input_order_despite_uneven_latency(
    emu: Emulator, gw: Gateway, make_files: MakeFiles
) -> None:
    """With ordered=True items come back in source order, whatever order runs finish in."""
    emu.set_faults(Faults(seed=3, routes={"POST /api/runs": FaultSpec(latency=(0.0, 0.01))}))
    items = await collect(gw, make_files(120), ordered=True, run_concurrency=16)
    assert list(range(120)) == [item.index for item in items]
    assert all(item.ok for item in items)


async def test_a_slow_run_stage_bounds_the_uploads_ahead_of_it(
    emu: Emulator, gw: Gateway, make_files: MakeFiles
) -> None:
    """Uploads and source reads never run further ahead of runs than the queues allow."""
    emu.set_faults(Faults(routes={"POST /api/runs": FaultSpec(latency=(0.005, 0.005))}))
    counts = {"read": 0, "uploaded": 0, "finished": 0}
    ahead = {"uploads": 0, "reads": 0}

    def on_event(event: IngestEvent) -> None:
        key = "finished" if event.kind in ("succeeded", "failed") else event.kind
        counts[key] = counts.get(key, 0) + 1
        ahead["uploads"] = max(ahead["uploads"], counts["uploaded"] - counts["finished"])
        ahead["reads"] = max(ahead["reads"], counts["read"] - counts["finished"])

    async def endless() -> AsyncIterator[Path]:
        for path in make_files(200):
            yield path

    items = await collect(gw, endless(), upload_concurrency=4, run_concurrency=2, on_event=on_event)
    assert len(items) == 200
    # run workers (2) + run queue (2) + uploaders holding a finished upload (4)
    assert 4 < ahead["uploads"] <= 2 + 2 + 4
    assert ahead["reads"] <= 2 * (4 + 2)  # the window: memory does not grow with the input


async def test_one_bad_source_fails_alone(gw: Gateway, make_files: MakeFiles) -> None:
    """A missing file and a failed run are reported on their items; the rest succeed."""
    files = make_files(20)
    files[3].unlink()
    fail = {files[7]}

    def params(source: Path) -> dict[str, Any]:
        return {"fail": "boom"} if source in fail else {}

    items = await collect(
        gw,
        files,
        model="demo-echo",
        mode="execute",
        scope=None,
        input=lambda ref, src: {"ref": ref.media_ref},
        params=params,
    )
    by_source = {item.source: item for item in items}
    assert len(by_source) == 20
    assert isinstance(by_source[files[3]].error, OSError | Exception)
    assert by_source[files[3]].run is None
    bad_run = by_source[files[7]].run
    assert bad_run is not None
    assert bad_run.status == "failed"
    assert sum(item.ok for item in items) == 18


async def test_an_empty_wallet_stops_everything_and_raises_after_the_finished_items(
    emu: Emulator, gw: Gateway, make_files: MakeFiles
) -> None:
    """A 402 dooms every run: finished items are yielded, then the error is raised."""
    emu.set_balance(Decimal("0.0100"))  # ten runs at 0.0010
    seen: list[IngestItem] = []

    async def consume() -> None:
        async for item in gw.ingest(make_files(100), model=MODEL, scope=SCOPE, run_concurrency=4):
            seen.append(item)

    with pytest.raises(InsufficientFundsError):
        await consume()
    assert 10 == sum(item.ok for item in seen) == len(seen)
    assert emu.stats.charges == 10
    assert not leftover_tasks()


async def test_a_forbidden_model_stops_promptly(make_files: MakeFiles) -> None:
    """A 403 on the model dooms every run of the ingest."""
    private = {"slug": "private-embed", "engine": "image", "allowed_keys": ["other-key"]}
    async with Emulator(api_keys=("key", "other-key"), extra_models=[private]) as emu:
        async with Gateway(api_key="key", base_url=emu.base_url) as gw:
            with pytest.raises(PermissionDeniedError):
                await collect(gw, make_files(50), model="private-embed", upload_concurrency=2)
        assert emu.stats.executions == 0
        assert emu.stats.uploads_completed < 50


async def test_max_spend_stops_launching_runs_before_the_cap(
    emu: Emulator, gw: Gateway, make_files: MakeFiles
) -> None:
    """The cap is never passed; the items left over are reported as not run."""
    ingest = gw.ingest(make_files(40), model=MODEL, scope=SCOPE, max_spend=Decimal("0.0125"))
    items = [item async for item in ingest]
    summary = ingest.summary
    assert (summary.succeeded, summary.stopped) == (12, "budget")
    assert emu.stats.charged_total <= Decimal("0.0125")
    assert all(isinstance(i.error, BudgetExhaustedError) for i in items if not i.ok)
    assert summary.total == summary.succeeded + summary.not_run


async def test_max_spend_is_capped_by_the_wallet(
    emu: Emulator, gw: Gateway, make_files: MakeFiles
) -> None:
    """The wallet is checked first: a cap above the balance spends only the balance."""
    emu.set_balance(Decimal("0.0050"))
    ingest = gw.ingest(make_files(20), model=MODEL, scope=SCOPE, max_spend=Decimal("10"))
    _ = [item async for item in ingest]
    assert (ingest.summary.succeeded, ingest.summary.not_run) == (5, 15)


async def test_resume_after_a_crash_runs_only_what_is_missing(
    emu: Emulator, gw: Gateway, make_files: MakeFiles, tmp_path: Path
) -> None:
    """Kill the ingest mid-run; the rerun skips, reuses and replays: nothing runs twice."""
    files = make_files(200)
    journal = tmp_path / "ingest.db"
    emu.set_faults(Faults(seed=1, routes={"POST /api/runs": FaultSpec(latency=(0.0, 0.004))}))
    done: list[IngestItem] = []

    async def consume() -> None:
        async for item in gw.ingest(files, model=MODEL, scope=SCOPE, journal=journal):
            done.append(item)
            if len(done) == 80:
                task.cancel()

    task = asyncio.create_task(consume())
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not leftover_tasks()

    again = gw.ingest(files, model=MODEL, scope=SCOPE, journal=journal)
    items = [item async for item in again]
    summary = again.summary
    assert len(items) == 200
    assert all(item.ok for item in items)
    assert summary.skipped >= 80
    assert summary.skipped + summary.succeeded == 200
    assert summary.uploaded + summary.reused + summary.skipped == 200
    assert summary.uploaded <= 200 - 80
    assert 200 == emu.stats.charges == emu.stats.index_size(MODEL, SCOPE)
    assert {1} == set(emu.stats.executions_by_idempotency_key.values())


async def test_rerun_with_a_journal_does_nothing_twice(
    emu: Emulator, gw: Gateway, make_files: MakeFiles, tmp_path: Path
) -> None:
    """A finished ingest run again is all skips: no upload, no run, no charge."""
    files = make_files(30)
    journal = tmp_path / "ingest.db"
    await collect(gw, files, journal=journal)
    again = gw.ingest(files, model=MODEL, scope=SCOPE, journal=str(journal))
    items = [item async for item in again]
    assert all(item.skipped and item.media_ref for item in items)
    assert (again.summary.skipped, again.summary.uploaded, again.summary.succeeded) == (30, 0, 0)
    assert 30 == emu.stats.charges == emu.stats.uploads_completed


async def test_same_content_is_uploaded_once(
    emu: Emulator, gw: Gateway, make_files: MakeFiles, tmp_path: Path
) -> None:
    """Content-addressed: copies are one identity (one upload, one run); a touched file is
    not re-sent."""
    copies = make_files(5, content=b"the same bytes")
    journal = tmp_path / "ingest.db"
    first = await collect(gw, copies, journal=journal, upload_concurrency=1)
    assert emu.stats.uploads_completed == 1
    assert len({item.media_ref for item in first}) == 1
    assert sorted(item.skipped for item in first) == [False, True, True, True, True]
    copies[0].write_bytes(b"the same bytes")  # new mtime, same content
    other = gw.ingest(copies, model=MODEL, scope="other", journal=journal)
    _ = [item async for item in other]
    summary = other.summary
    assert (summary.uploaded, summary.reused, summary.succeeded, summary.skipped) == (0, 1, 1, 4)
    assert emu.stats.uploads_completed == 1
    assert emu.stats.executions == 2


async def test_cancelling_the_consumer_leaves_nothing_running(
    emu: Emulator, gw: Gateway, make_files: MakeFiles, tmp_path: Path
) -> None:
    """Task cancellation stops every stage and closes the journal's thread."""
    emu.set_faults(Faults(routes={"POST /api/runs": FaultSpec(latency=(0.01, 0.01))}))
    first_item = asyncio.Event()

    async def consume() -> None:
        async for _ in gw.ingest(make_files(100), model=MODEL, scope=SCOPE, journal=tmp_path / "j"):
            first_item.set()

    task = asyncio.create_task(consume())
    await first_item.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not leftover_tasks()
    async with gw.ingest([], model=MODEL, scope=SCOPE, journal=tmp_path / "j") as again:
        assert [item async for item in again] == []  # the journal's lock was released


async def test_leaving_early_with_async_with_stops_the_work(
    gw: Gateway, make_files: MakeFiles
) -> None:
    """Breaking out inside ``async with`` cancels what is still in flight."""
    async with gw.ingest(make_files(100), model=MODEL, scope=SCOPE) as ingest:
        async for _ in ingest:
            break
    assert not leftover_tasks()
    assert ingest.summary.stopped == "cancelled"


async def test_stop_ends_an_endless_source_gracefully(gw: Gateway) -> None:
    """stop() reads no more sources and finishes those already read."""
    counter = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal counter
        while True:
            counter += 1
            yield f"generated {counter}".encode()

    ingest = gw.ingest(endless(), model=MODEL, scope=SCOPE)
    async for item in ingest:
        assert item.ok
        if item.index == 25:
            ingest.stop()
    summary = ingest.summary
    assert summary.stopped == "stopped"
    assert summary.total == summary.succeeded <= 26 + 2 * (8 + 32)


async def test_repeated_429s_shrink_concurrency_and_every_item_still_succeeds(
    emu: Emulator, make_files: MakeFiles
) -> None:
    """Throttled runs are retried after the client-wide pause, with fewer in flight."""
    emu.set_faults(
        Faults(seed=5, routes={"POST /api/runs": FaultSpec(error_429=0.3, retry_after=0)})
    )
    limits = []
    async with emu.client(max_retries=0) as gw:
        ingest = gw.ingest(make_files(60), model=MODEL, scope=SCOPE, run_concurrency=16)
        async for item in ingest:
            assert item.ok, item
            limits.append(ingest.concurrency)
    assert min(limits) < 16
    assert emu.stats.charges == 60


async def test_media_refs_and_bytes_are_sources_too(emu: Emulator, gw: Gateway) -> None:
    """A MediaRef is run without uploading again; bytes are uploaded."""
    uploaded = await collect(gw, [b"raw bytes one"])
    ref = uploaded[0].media_ref
    assert isinstance(ref, MediaRef)
    again = await collect(gw, [ref], scope="other")
    assert again[0].ok
    assert again[0].media_ref == ref
    assert emu.stats.uploads_completed == 1


async def test_bad_options_are_refused_at_the_call(gw: Gateway) -> None:
    """Option errors raise InvalidRequestError before any work starts."""
    with pytest.raises(InvalidRequestError, match="run_concurrency"):
        gw.ingest([], model=MODEL, run_concurrency=0)
    with pytest.raises(InvalidRequestError, match="not both"):
        gw.ingest([], model=MODEL, input=lambda r, s: {}, input_field="image")


async def test_a_mode_the_model_lacks_is_raised_on_iteration(gw: Gateway) -> None:
    """The model is checked once, when iteration starts."""
    with pytest.raises(InvalidRequestError, match="mode"):
        await collect(gw, [b"x"], model="demo-echo", mode="index")

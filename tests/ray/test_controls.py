"""The job-wide controls without a Ray runtime: the ledger (budget, AIMD, pause, leases,
error fraction) in one loop, and a GatewayRunner's rows for each kind of failure.

These run in-process against the emulator; ``test_ray`` runs the same controls across
real Ray actors.
"""

from __future__ import annotations

import asyncio
import socket
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from gateway_async import APIConnectionError, InvalidRequestError, RetryPolicy, RunRequest
from gateway_async._pipeline._job import Grant, JobLedger, Outcome, Report
from gateway_async.emulator import Emulator
from gateway_async.ray import GatewayRunner, GatewayUploader

PRICE = Decimal("0.0010")


def echo(row: dict[str, Any]) -> RunRequest:
    return RunRequest(model="demo-echo", input={"i": row["id"]})


def paid(grant: Grant, charged: Decimal | None = PRICE) -> Report:
    """Every permit of ``grant`` ran and cost ``charged`` (None: the outcome is unknown)."""
    outcome = Outcome(grant.lease, grant.token, charged, shows_price=True, succeeded=True)
    return Report((outcome,) * grant.permits)


async def test_the_budget_probes_the_price_then_reserves_the_largest_charge() -> None:
    """The first grant is one permit (the price is unknown); then permits fit the cap at
    the largest charge seen; an unknown outcome counts as spent; then nothing more."""
    ledger = JobLedger(concurrency=100, max_spend=Decimal("0.0100"))
    probe = await ledger.acquire(50, Report())
    assert probe.permits == 1
    block = await ledger.acquire(50, paid(probe))
    assert block.permits == 9  # 0.0010 spent, 9 x 0.0010 reserved
    last = await ledger.acquire(50, paid(block, charged=None))  # unknown: counted as spent
    assert (last.permits, last.exhausted) == (0, True)
    assert ledger.spent == Decimal("0.0100")


async def test_a_larger_charge_raises_the_rate_of_every_later_reservation() -> None:
    ledger = JobLedger(concurrency=100, max_spend=Decimal("0.0100"))
    probe = await ledger.acquire(50, Report())
    block = await ledger.acquire(50, paid(probe, Decimal("0.0030")))
    assert block.permits == 2  # 0.0030 spent, 2 x 0.0030 fit under 0.0100


async def test_a_lease_whose_holder_died_expires_as_spent() -> None:
    """Permits never reported (their actor died) settle as unknown after the lease: the
    budget counts them and nobody waits for them for ever."""
    ledger = JobLedger(concurrency=100, max_spend=Decimal("0.0030"), lease_seconds=0.05)
    probe = await ledger.acquire(5, Report())
    block = await ledger.acquire(5, paid(probe))
    assert block.permits == 2  # never reported: its holder "died"
    last = await asyncio.wait_for(ledger.acquire(5, Report()), 30)  # woken by the expiry
    assert (last.permits, last.exhausted) == (0, True)
    assert ledger.spent == Decimal("0.0030")


async def test_429_pauses_the_job_and_halves_its_concurrency_once_per_burst() -> None:
    ledger = JobLedger(concurrency=8)
    grant = await ledger.acquire(8, Report())
    assert grant.permits == 8
    throttled = Outcome(grant.lease, grant.token, Decimal(0), throttled=True)
    ledger.report(Report((throttled,) * 3, retry_after=30.0))
    assert ledger.concurrency == 4  # three 429s of one burst: one halving
    nxt = await ledger.acquire(8, paid(Grant(grant.lease, grant.token, 3)))
    assert nxt.permits == 2  # 2 of the old 8 still out, under the new limit of 4
    assert nxt.delay > 29  # every worker's next call waits for the Retry-After


async def test_pace_spaces_the_permits_of_the_whole_job() -> None:
    ledger = JobLedger(concurrency=64, requests_per_second=100.0)
    one = await ledger.acquire(10, Report())
    two = await ledger.acquire(10, Report())
    assert (one.permits, one.interval) == (10, pytest.approx(0.01))
    assert two.delay >= 0.09  # the second block starts where the first one's slots end


async def test_max_error_fraction_stops_the_job() -> None:
    ledger = JobLedger(concurrency=8, max_error_fraction=0.25)
    assert ledger.report(Report(rows_ok=8, rows_failed=2)).stop is None
    stop = ledger.report(Report(rows_ok=0, rows_failed=2)).stop
    assert stop is not None
    assert "4 of the 12" in stop
    assert (await ledger.acquire(1, Report())).permits == 0


async def test_runner_rows_for_each_kind_of_failure() -> None:
    """A raising to_request is its row's error (short, no traceback); a failed run has a
    null run_output; all-failed and all-good batches have the same Arrow schema."""

    def fussy(row: dict[str, Any]) -> RunRequest:
        if row["id"] == 1:
            raise KeyError("image")
        params = {"fail": "boom"} if row["id"] == 2 else {}
        return RunRequest(model="demo-echo", input={"i": row["id"]}, params=params)

    async with Emulator() as emu:
        runner = GatewayRunner(
            job="t-rows", to_request=fussy, api_key=emu.api_key, base_url=emu.base_url
        )
        try:
            out = await runner(pa.table({"id": [0, 1, 2]}))
            failed = await runner(pa.table({"id": [1]}))
            good = await runner(pa.table({"id": [0]}))
        finally:
            await runner.aclose()
    rows = out.to_pylist()
    assert (rows[1]["run_error_type"], rows[1]["run_error"]) == ("KeyError", "'image'")
    assert (rows[2]["run_status"], rows[2]["run_output"]) == ("failed", None)
    assert rows[0]["run_output"] == '{"i":0}'
    assert failed.schema == good.schema == out.schema


async def test_on_error_raise_lets_the_exception_of_to_request_stop_the_job() -> None:
    def broken(row: dict[str, Any]) -> RunRequest:
        raise KeyError("image")

    runner = GatewayRunner(
        job="t-raise",
        to_request=broken,
        on_error="raise",
        api_key="gk_x",
        base_url="http://127.0.0.1:9",
    )
    with pytest.raises(KeyError):
        await runner(pa.table({"id": [1]}))
    await runner.aclose()


async def test_another_batch_format_is_refused_by_name() -> None:
    runner = GatewayUploader(job="t-format", api_key="gk_x", base_url="http://127.0.0.1:9")
    with pytest.raises(InvalidRequestError, match='batch_format="pyarrow"') as info:
        await runner({"path": np.array(["a"])})  # type: ignore[arg-type]
    assert info.value.field == "batch_format"


async def test_an_unreachable_gateway_stops_the_job_at_the_first_calls() -> None:
    """Every call of the first batch finds no Gateway and none ever answered: raised
    (not a job of APIConnectionError rows), after the first calls only."""
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
    runner = GatewayRunner(
        job="t-down",
        to_request=echo,
        api_key="gk_test",
        base_url=f"http://127.0.0.1:{port}",
        in_flight=4,
        gateway_kwargs={"retry": RetryPolicy(base_delay=0, max_delay=0)},
    )
    try:
        with pytest.raises(APIConnectionError, match="could not be reached"):
            await runner(pa.table({"id": list(range(50))}))
    finally:
        await runner.aclose()


async def test_a_replayed_run_says_so_and_is_the_same_run() -> None:
    """The budget counts a replay as free: Run.replayed comes from Idempotent-Replayed."""
    async with Emulator() as emu, emu.client() as gw:
        request = RunRequest(model="demo-echo", input={"i": 1}, idempotency_key="t-replay-1")
        first = await gw.runs.send(request)
        again = await gw.runs.send(request)
    assert (first.replayed, again.replayed) == (False, True)
    assert first == again
    assert emu.stats.charges == 1

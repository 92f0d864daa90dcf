"""The fault soak: ``gw.ingest`` of N files against the emulator with every fault at once.

10% 503, 5% 429 (``Retry-After: 0``), 2% connection resets (mid-body on storage PUTs, before
or after executing on the API), 2% lost replies on every POST (executed, then the
connection is aborted), 1% truncated JSON and 0-20 ms of latency, seeded. Whatever
the faults, every file must end indexed exactly once (one execution and one charge), its
stored bytes must be the file's, nothing may leak, and a rerun with the journal, or a rerun
after the ingesting process was SIGKILLed, must not execute or charge anything twice.

``GATEWAY_SOAK_N`` sets N (500 here, 20,000 in ``make soak``).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import random
import signal
import threading
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest

from gateway_async import testing
from gateway_async.emulator import Emulator, Faults
from gateway_async.emulator._faults import Decision
from tests.conftest import wait_until
from tests.pipeline.conftest import leftover_tasks, sha256_of
from tests.uploads.test_faults import open_files

from ._ingest_child import (
    FAULTS,
    MODEL,
    PRICE,
    SCOPE,
    Outcome,
    ingest_files,
    parse_output,
    spawn,
)

pytestmark = pytest.mark.soak

gateway_emulator = testing.gateway_emulator  # the shared fixture, under its own name

N = int(os.environ.get("GATEWAY_SOAK_N", "500"))
KILL_N = min(N, max(200, N // 10))  # the SIGKILL test restarts processes: keep it smaller
BALANCE = Decimal("100000.0000")
SMALL = (1024, 4096)  # bytes of most files
BIG, BIG_EVERY = 300 * 1024, 50  # and one in 50 is big enough to be cut off mid-stream
PUT, INIT, COMPLETE, RUNS = (
    "PUT /storage",
    "POST /api/media/upload/init",
    "POST /api/media/upload/complete",
    "POST /api/runs",
)
SETTLE_TIMEOUT = 10.0
CHILD_TIMEOUT = 120.0 + N / 20


# -- inputs ---------------------------------------------------------------------------------


def make_soak_files(root: Path, n: int, seed: int) -> dict[Path, str]:
    """``n`` files of distinct random bytes, mostly 1-4 KiB: their paths and sha256s."""
    rng = random.Random(seed)
    root.mkdir()
    files = {}
    for i in range(n):
        size = BIG if i % BIG_EVERY == BIG_EVERY // 2 else rng.randint(*SMALL)
        path = root / f"{i:06d}.bin"
        path.write_bytes(rng.randbytes(size))
        files[path] = sha256_of(path)
    return files


def start_faults(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> FaultLog:
    """Switch every fault on (and a known balance), logging what each request gets."""
    log = FaultLog()
    injector = emu.core.faults
    decide = injector.decide

    def logged(route: str) -> Decision:
        decision = decide(route)
        log.record(route, decision)
        return decision

    monkeypatch.setattr(injector, "decide", logged)
    emu.set_faults(Faults.parse(FAULTS))
    emu.set_balance(BALANCE)
    return log


@attrs.define
class FaultLog:
    """The fault each request was dealt, per route: what the emulator actually did to it.

    The emulator applies a 503/429 first, else a reset, else (API only, on a 2xx) a
    truncated body; a latency alone harms nothing. So every request logged with a harmful
    fault failed and had to be sent again.
    """

    counts: Counter[tuple[str, str]] = attrs.Factory(Counter)

    def record(self, route: str, decision: Decision) -> None:
        if decision.status is not None:
            effect = str(decision.status)
        elif decision.reset is not None:
            effect = "reset mid-body" if route == PUT else f"reset {decision.reset} executing"
        elif decision.truncate and route != PUT:
            effect = "truncated"
        else:
            effect = "harmless"
        self.counts[(route, effect)] += 1

    def failed(self, route: str) -> int:
        """Requests of ``route`` that a fault made fail."""
        return sum(
            n for (r, effect), n in self.counts.items() if r == route and effect != "harmless"
        )

    def of(self, route: str, effect: str) -> int:
        return self.counts[(route, effect)]

    def report(self) -> str:
        return ", ".join(
            f"{r} {e}: {n}" for (r, e), n in sorted(self.counts.items()) if e != "harmless"
        )


# -- leaks ----------------------------------------------------------------------------------


@attrs.frozen
class Resources:
    """What this process's descriptors point at (sockets by inode) and its live tasks."""

    files: frozenset[str]
    tasks: frozenset[asyncio.Task[Any]]

    @classmethod
    def take(cls) -> Resources:
        tasks = frozenset(t for t in asyncio.all_tasks() if not t.done())
        return cls(frozenset(open_files()), tasks)

    @property
    def sockets(self) -> frozenset[str]:
        return frozenset(f for f in self.files if f.startswith("socket:"))

    async def settled(self) -> Resources:
        """Resources once they are back to these: closed sockets and ended handler tasks
        may take a few loop iterations to go (polled, bounded by ``SETTLE_TIMEOUT``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_TIMEOUT
        while True:
            now = Resources.take()
            if (now.files == self.files and now.tasks <= self.tasks) or loop.time() > deadline:
                return now
            await asyncio.sleep(0.01)

    def assert_restored(self, after: Resources) -> None:
        assert after.sockets == self.sockets, "connections left open (or closed under us)"
        assert after.files == self.files, "file descriptors left open (or closed under us)"
        assert after.tasks <= self.tasks, f"leaked tasks: {after.tasks - self.tasks}"
        assert not leftover_tasks()
        assert not [t for t in threading.enumerate() if t.name.startswith("gateway-journal")]


# -- what exactly-once means ----------------------------------------------------------------


def counters(emu: Emulator) -> dict[str, Any]:
    """Everything that an upload, a run or a charge would move."""
    stats = emu.stats
    return {
        "uploads_initiated": stats.uploads_initiated,
        "uploads_completed": stats.uploads_completed,
        "puts": stats.puts,
        "executions": stats.executions,
        "charges": stats.charges,
        "charged_total": stats.charged_total,
        "balance": emu.core.state.balance,
        "usage": len(emu.core.state.usage),
        "index_size": stats.index_size(MODEL, SCOPE),
        "media": len(emu.core.state.media),
        **{route: stats.requests_by_route[route] for route in (PUT, INIT, COMPLETE, RUNS)},
    }


def stored_sha256(emu: Emulator, media_ref: str) -> str:
    return hashlib.sha256(emu.media_path(media_ref).read_bytes()).hexdigest()


def assert_exactly_once(
    emu: Emulator, outcomes: Sequence[Outcome], files: Mapping[Path, str]
) -> None:
    """Every file indexed once, charged once, its stored bytes its own."""
    n = len(files)
    assert [o for o in outcomes if o.error is not None] == []
    assert sorted(o.source for o in outcomes) == sorted(str(p) for p in files)
    stats = emu.stats
    per_key = stats.executions_by_idempotency_key
    assert (stats.executions, len(per_key)) == (n, n)
    assert [key for key, runs in per_key.items() if runs != 1] == []
    assert (stats.charges, len(emu.core.state.usage)) == (n, n)
    assert stats.charged_total == n * PRICE
    assert BALANCE - emu.core.state.balance == n * PRICE
    assert stats.index_size(MODEL, SCOPE) == n
    assert stats.credential_leaks == 0
    by_source = {Path(o.source): o for o in outcomes}
    media_refs = [o.media_ref for o in outcomes]
    assert len(set(media_refs)) == n
    for path, sha256 in files.items():
        outcome = by_source[path]
        assert outcome.media_ref is not None
        assert (outcome.sha256, stored_sha256(emu, outcome.media_ref)) == (sha256, sha256), path
    # Uploads the journal never learnt of (a killed process) must be whole as well.
    contents = set(files.values())
    for media_ref, media in emu.core.state.media.items():
        assert stored_sha256(emu, media_ref) == media.sha256 in contents, media_ref
    assert list((emu.core.media_root / "tmp").iterdir()) == []  # no partial PUT left behind


def assert_each_fault_struck(log: FaultLog, emu: Emulator) -> None:
    """The soak is not vacuous: each kind of fault hit the routes it matters on."""
    injected = emu.stats.faults_injected
    for kind in ("503", "429", "reset", "truncated_json", "latency"):
        assert injected[kind] > 0, (kind, injected)
    assert log.of(PUT, "reset mid-body") > 0, log.report()
    # Work done whose answer was lost, on every POST: only the idempotency key saves it.
    for route in (INIT, COMPLETE, RUNS):
        assert log.of(route, "reset after executing") > 0, (route, log.report())
    lost = log.of(RUNS, "reset after executing") + log.of(RUNS, "truncated")
    assert emu.stats.replays >= lost


# -- the tests ------------------------------------------------------------------------------


async def test_every_file_is_indexed_exactly_once_through_every_fault(
    gateway_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """N files through 503s, 429s, resets, truncated bodies and latency: each indexed once,
    byte-exact, no leaks, no warnings; a second run with the journal does nothing."""
    emu = gateway_emulator
    files = make_soak_files(tmp_path / "data", N, seed=1)
    log = start_faults(emu, monkeypatch)
    journal = tmp_path / "journal.db"
    before = Resources.take()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcomes, summary = await ingest_files(emu.base_url, emu.api_key, list(files), journal)
        gc.collect()  # an unclosed session or transport warns when collected
        after = await before.settled()
    assert [str(w.message) for w in caught] == []
    before.assert_restored(after)

    assert_exactly_once(emu, outcomes, files)
    assert len({o.run_id for o in outcomes}) == N
    assert (summary.total, summary.uploaded, summary.succeeded) == (N, N, N)
    assert (summary.failed, summary.skipped, summary.reused, summary.stopped) == (0, 0, 0, None)
    assert summary.credits == N * PRICE
    stats = emu.stats
    assert stats.uploads_initiated == stats.uploads_completed == N
    # Each request a fault broke was sent once more, and no request was sent for nothing.
    for route in (PUT, INIT, COMPLETE, RUNS):
        assert stats.requests_by_route[route] == N + log.failed(route), (route, log.report())
    assert_each_fault_struck(log, emu)

    done = counters(emu)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again, summary = await ingest_files(emu.base_url, emu.api_key, list(files), journal)
        gc.collect()
        after = await before.settled()
    assert [str(w.message) for w in caught] == []
    before.assert_restored(after)
    assert counters(emu) == done  # no upload, no PUT, no run, no charge
    assert (summary.total, summary.skipped, summary.uploaded, summary.succeeded) == (N, N, 0, 0)
    assert summary.credits == 0
    assert {(o.source, o.media_ref) for o in again} == {(o.source, o.media_ref) for o in outcomes}
    assert all(o.skipped and o.run_id is None for o in again)


async def _child(emu: Emulator, journal: Path, data: Path) -> asyncio.subprocess.Process:
    return await spawn(emu.base_url, emu.api_key, journal, data)


async def _child_to_the_end(
    emu: Emulator, journal: Path, data: Path
) -> tuple[list[Outcome], dict[str, Any]]:
    child = await _child(emu, journal, data)
    out, err = await asyncio.wait_for(child.communicate(), CHILD_TIMEOUT)
    assert (child.returncode, err.decode()) == (0, "")
    return parse_output(out.decode())


def _served(emu: Emulator) -> int:
    return sum(emu.stats.requests_by_route.values())


@pytest.mark.parametrize("seed", [11, 12])
async def test_an_ingest_killed_at_a_random_point_resumes_exactly_once(
    gateway_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """SIGKILL the ingesting process mid-way, rerun it on the journal: still one execution
    and one charge per file, all indexed and byte-exact; a third run does nothing."""
    emu = gateway_emulator
    files = make_soak_files(tmp_path / "data", KILL_N, seed=seed)
    log = start_faults(emu, monkeypatch)
    journal = tmp_path / "journal.db"
    # About 5 requests per file get served under these faults: kill between 1/5 and 3/5.
    kill_at = random.Random(seed).randint(KILL_N, 3 * KILL_N)
    before = Resources.take()

    child = await _child(emu, journal, tmp_path / "data")
    await wait_until(
        lambda: (
            child.returncode is not None or (_served(emu) >= kill_at and emu.stats.executions > 0)
        ),
        f"{kill_at} requests served",
        CHILD_TIMEOUT,
    )
    assert child.returncode is None, "the ingest ended before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    await asyncio.wait_for(child.communicate(), CHILD_TIMEOUT)
    assert child.returncode == -signal.SIGKILL
    assert 0 < emu.stats.executions < KILL_N

    outcomes, summary = await _child_to_the_end(emu, journal, tmp_path / "data")
    assert 0 < summary["skipped"] < KILL_N  # it resumed: what the journal had was not redone
    assert summary["total"] == KILL_N
    assert_exactly_once(emu, outcomes, files)
    assert log.failed(RUNS) > 0, log.report()
    assert log.failed(PUT) > 0, log.report()

    done = counters(emu)
    again, summary = await _child_to_the_end(emu, journal, tmp_path / "data")
    assert counters(emu) == done
    assert (summary["skipped"], summary["uploaded"]) == (KILL_N, 0)
    assert {(o.source, o.media_ref) for o in again} == {(o.source, o.media_ref) for o in outcomes}
    before.assert_restored(await before.settled())

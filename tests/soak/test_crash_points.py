"""Crash-point enumeration: SIGKILL the ingesting process at every step of an item's life.

One child process ingests three small files (two of them with the same bytes; ``make soak``
adds twenty more) with a journal and ``max_spend``, and is killed at one chosen step: by
the emulator, at the exact moment it handles that request (after init, mid-PUT, after the
PUT, after complete, with the run received but not executed, with the run executed and its
reply not yet sent), or by itself, through the child's test-only seam, right after a
journal write or right after a run's reply. The ingest is then resumed (in this process)
and run once more, and the emulator's counters must show one execution and one charge per
content, every stored media byte-exact, the budget never passed, and nothing done by the last
rerun. No sleeps: every kill is triggered by the step itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import pytest
from aiohttp import web

from gateway_async import testing
from gateway_async.emulator import Emulator
from gateway_async.emulator._faults import Decision

from ._ingest_child import MODEL, PRICE, SCOPE, Outcome, ingest_files, spawn
from .test_soak import counters, stored_sha256

pytestmark = pytest.mark.soak

gateway_emulator = testing.gateway_emulator

INIT, COMPLETE, RUNS = (
    "POST /api/media/upload/init",
    "POST /api/media/upload/complete",
    "POST /api/runs",
)
# ``make test``: three files; ``make soak`` (GATEWAY_SOAK_N=20000) adds 20 more.
EXTRA = int(os.environ.get("GATEWAY_SOAK_N", "500")) // 1000
CONTENTS = {
    "a.bin": b"twin bytes" * 100,
    "b.bin": b"twin bytes" * 100,
    "c.bin": b"c" * 3000,
    **{f"x{i:03d}.bin": f"extra {i} ".encode() * 200 for i in range(EXTRA)},
}
MAX_SPEND = len(CONTENTS) * PRICE
CHILD_TIMEOUT = 60.0

# Where the emulator kills the child: (route, "before" or "after" handling it).
SERVER_POINTS = {
    "after-init": (INIT, "after"),
    "after-put": (COMPLETE, "before"),  # the bytes are stored; complete never ran
    "after-complete": (COMPLETE, "after"),
    "run-sent": (RUNS, "before"),  # received, not executed
    "run-executed": (RUNS, "after"),  # executed and charged; the reply is lost
}
# Where the child kills itself: around a journal method (see _ingest_child).
CLIENT_POINTS = {
    "after-upload-journaled": "remember:after",
    "after-run-written-ahead": "begin_run:after",
    "after-reply": "settle_run:before",
    "after-outcome-journaled": "settle_run:after",
}


@attrs.define
class Killer:
    """SIGKILLs the child once, at the first request that reaches the chosen step."""

    child: asyncio.subprocess.Process | None = None
    fired: bool = False

    def kill_now(self) -> bool:
        if self.fired or self.child is None:
            return False
        self.fired = True
        os.kill(self.child.pid, signal.SIGKILL)
        return True

    async def kill(self) -> None:
        if self.kill_now():
            assert self.child is not None
            await self.child.wait()  # dead before this request's answer is written


def kill_in_handler(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, killer: Killer, route: str, when: str
) -> None:
    """Kill the child inside the emulator's handling of ``route`` (every POST passes
    through the idempotency layer: before it, nothing ran; after it, everything did)."""
    handle = emu.core.idempotency.handle

    async def killing(
        request: web.Request,
        who: str,
        raw: bytes,
        handler: Callable[[], Awaitable[web.Response]],
    ) -> web.Response:
        hit = f"{request.method} {request.path}" == route
        if hit and when == "before":
            await killer.kill()
        response = await handle(request, who, raw, handler)
        if hit and when == "after":
            await killer.kill()
        return response

    monkeypatch.setattr(emu.core.idempotency, "handle", killing)


def kill_mid_put(emu: Emulator, monkeypatch: pytest.MonkeyPatch, killer: Killer) -> None:
    """Kill the child as its first PUT arrives, and have storage read only half the body."""
    decide = emu.core.faults.decide

    def killing(route: str) -> Decision:
        if route == "PUT /storage" and killer.kill_now():
            return Decision(reset="mid-body")
        return decide(route)

    monkeypatch.setattr(emu.core.faults, "decide", killing)


def make_files(root: Path) -> dict[Path, str]:
    root.mkdir()
    files = {}
    for name, content in CONTENTS.items():
        (root / name).write_bytes(content)
        files[root / name] = hashlib.sha256(content).hexdigest()
    return files


async def run_killed_child(emu: Emulator, killer: Killer, data: Path, kill_at: str | None) -> None:
    journal = data.parent / "journal.db"
    killer.child = await spawn(
        emu.base_url, emu.api_key, journal, data, max_spend=MAX_SPEND, kill_at=kill_at
    )
    _, err = await asyncio.wait_for(killer.child.communicate(), CHILD_TIMEOUT)
    assert killer.child.returncode == -signal.SIGKILL, err.decode()[-2000:]


def assert_once_each(emu: Emulator, outcomes: list[Outcome], files: dict[Path, str]) -> None:
    """One execution and one charge per content (twins are one identity: issue #20),
    byte-exact media, the budget kept."""
    n = len(set(files.values()))
    assert [o for o in outcomes if o.error is not None] == []
    assert sorted(o.source for o in outcomes) == sorted(str(p) for p in files)
    stats = emu.stats
    assert (stats.executions, stats.charges, stats.index_size(MODEL, SCOPE)) == (n, n, n)
    assert sorted(stats.executions_by_idempotency_key.values()) == [1] * n
    assert stats.charged_total == n * PRICE <= MAX_SPEND
    for outcome in outcomes:
        assert outcome.media_ref is not None
        stored = stored_sha256(emu, outcome.media_ref)
        assert stored == files[Path(outcome.source)], outcome
    for media_ref, media in emu.core.state.media.items():  # incl. uploads a kill orphaned
        assert stored_sha256(emu, media_ref) == media.sha256 in files.values(), media_ref


@pytest.mark.parametrize("point", [*SERVER_POINTS, "mid-put", *CLIENT_POINTS])
async def test_a_kill_at_each_step_resumes_to_exactly_once(
    gateway_emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    emu, killer = gateway_emulator, Killer()
    files = make_files(tmp_path / "data")
    if point in SERVER_POINTS:
        kill_in_handler(emu, monkeypatch, killer, *SERVER_POINTS[point])
    elif point == "mid-put":
        kill_mid_put(emu, monkeypatch, killer)
    await run_killed_child(emu, killer, tmp_path / "data", CLIENT_POINTS.get(point))
    assert emu.stats.executions <= len(files)

    journal = tmp_path / "journal.db"
    ordered = sorted(files)
    outcomes, summary = await ingest_files(emu.base_url, emu.api_key, ordered, journal, MAX_SPEND)
    assert_once_each(emu, outcomes, files)
    assert summary.credits <= MAX_SPEND

    done = counters(emu)
    again, summary = await ingest_files(emu.base_url, emu.api_key, ordered, journal, MAX_SPEND)
    assert counters(emu) == done  # a rerun of a finished ingest executes nothing
    assert all(o.skipped for o in again)

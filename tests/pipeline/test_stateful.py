"""A hypothesis state machine against the ingest: exactly once, whatever the interleaving.

Each example gets a fresh emulator, one journal and a client without retries (so every
fault reaches the pipeline). Its steps interleave journaled ingests of a small pool of
sources (two files with the same bytes, the same bytes twice in one input) with: replies
lost after executing (runs only, or every POST), runs answered 409 after executing (a run
with this key exists), 429s with ``Retry-After: 3600``, a source iterator that raises,
and crashes (the ingest cancelled after some items). The model is the set of contents
ingested so far; the server must never execute (or charge) more than once per content,
a long Retry-After must never pause the client, and at the end a clean ingest of every
source leaves exactly one execution and one charge each, and a rerun executes nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from gateway_async import Gateway, RetryPolicy
from gateway_async.emulator import Emulator, Faults, FaultSpec
from gateway_async.emulator._errors import ApiError
from gateway_async.pipeline import IngestItem

from .conftest import leftover_tasks

MODEL, SCOPE, PRICE = "demo-image-embed", "stateful", Decimal("0.0010")
RUNS = "POST /api/runs"
GUARD = 20.0
TWIN = b"twin content " * 40
BLOB = b"a blob given as bytes " * 30
FAULTS = {
    "none": None,
    "lost runs": Faults(routes={RUNS: FaultSpec(lost_reply=1.0)}),
    "lost posts": Faults(seed=1, routes={"*": FaultSpec(lost_reply=0.5)}),
    "429 long": Faults(routes={RUNS: FaultSpec(error_429=1.0, retry_after=3600)}),
    "409": None,  # see _conflicting
}


class SourceBroke(Exception):
    pass


class IngestMachine(RuleBasedStateMachine):
    """The system: emulator + journal + client. The model: which sources were ingested."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.root = Path(tempfile.mkdtemp(prefix="ingest-machine-"))
        self.files = [self.root / f"{i}.bin" for i in range(4)]
        for path, content in zip(
            self.files, [TWIN, TWIN, b"third " * 50, b"fourth " * 60], strict=True
        ):
            path.write_bytes(content)
        self.sources: list[Any] = [*self.files, BLOB, bytearray(BLOB)]
        self.emu = Emulator(initial_balance=Decimal("1000"))
        self.conflicts = False
        self.fault = "none"
        self.started: set[str] = set()  # journal keys of every source ever given
        self.loop.run_until_complete(self.emu.start())
        self.gw: Gateway = self.emu.client(retry=RetryPolicy(max_retries=0))
        self._inject_conflicts()

    def _inject_conflicts(self) -> None:
        handle = self.emu.core.idempotency.handle

        async def conflicting(
            request: web.Request,
            who: str,
            raw: bytes,
            handler: Callable[[], Awaitable[web.Response]],
        ) -> web.Response:
            """In "409" mode a run executes, then the answer is a 409: the run exists."""
            response = await handle(request, who, raw, handler)
            if self.conflicts and f"{request.method} {request.path}" == RUNS:
                return ApiError(409, "injected: this key was already used").response()
            return response

        self.emu.core.idempotency.handle = conflicting  # type: ignore[method-assign]

    def teardown(self) -> None:
        try:
            self.loop.run_until_complete(self._finish())
        finally:
            self.loop.run_until_complete(self._close())
            self.loop.close()
            shutil.rmtree(self.root)

    async def _close(self) -> None:
        await self.gw.aclose()
        await self.emu.close()

    async def _finish(self) -> None:
        """Without faults, ingest every source once more: each then ran exactly once."""
        self._set_fault("none")
        items = await self._ingest(self.sources)
        assert all(item.ok for item in items), [i.error for i in items if not i.ok]
        self.started |= {_key(s) for s in self.sources}
        stats = self.emu.stats
        assert (stats.executions, stats.charges) == (len(self.started), len(self.started))
        again = await self._ingest(self.sources)
        assert all(item.skipped for item in again)
        assert self.emu.stats.executions == len(self.started)

    # -- rules -------------------------------------------------------------------------------

    @rule(fault=st.sampled_from(sorted(FAULTS)))
    def set_fault(self, fault: str) -> None:
        self._set_fault(fault)

    @rule(
        picks=st.lists(st.integers(0, 5), min_size=1, max_size=5),
        source_error=st.booleans(),
        crash_after=st.none() | st.integers(0, 3),
    )
    def ingest(self, picks: list[int], source_error: bool, crash_after: int | None) -> None:
        """Ingest some sources (maybe with repeats); the iterator may raise at its end, and
        the ingest may be cancelled (a crash) after ``crash_after`` items."""
        chosen = [self.sources[i] for i in picks]
        self.started |= {_key(s) for s in chosen}
        self.loop.run_until_complete(self._ingest_step(chosen, source_error, crash_after))

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def never_more_than_once_per_source(self) -> None:
        stats = self.emu.stats
        assert stats.executions <= len(self.started)
        assert stats.charges == stats.executions
        assert stats.charged_total == stats.executions * PRICE
        assert set(stats.executions_by_idempotency_key.values()) <= {1}

    # -- helpers -----------------------------------------------------------------------------

    def _set_fault(self, fault: str) -> None:
        self.fault = fault
        self.conflicts = fault == "409"
        self.emu.set_faults(FAULTS[fault])

    async def _ingest_step(
        self, chosen: list[Any], source_error: bool, crash_after: int | None
    ) -> None:
        task = asyncio.ensure_future(self._ingest(_sources(chosen, source_error), crash_after))
        try:
            await asyncio.wait_for(task, GUARD)
        except SourceBroke:
            assert source_error
        except asyncio.CancelledError:
            assert crash_after is not None
        assert not leftover_tasks()
        if self.fault == "429 long":  # the client was not paused for an hour
            await asyncio.wait_for(self.gw.billing.wallet(), GUARD)

    async def _ingest(self, sources: Any, crash_after: int | None = None) -> list[IngestItem]:
        items: list[IngestItem] = []
        journal = self.root / "journal.db"
        async for item in self.gw.ingest(sources, model=MODEL, scope=SCOPE, journal=journal):
            items.append(item)
            if crash_after is not None and len(items) > crash_after:
                current = asyncio.current_task()
                assert current is not None
                current.cancel()
        return items


def _sources(chosen: list[Any], source_error: bool) -> Iterator[Any]:
    yield from chosen
    if source_error:
        raise SourceBroke("the listing failed")


def _key(source: Any) -> str:
    """The model's name for a source: its content (one identity per content and request)."""
    data = source.read_bytes() if isinstance(source, Path) else bytes(source)
    return hashlib.sha256(data).hexdigest()


IngestMachine.TestCase.settings = settings(
    max_examples=12, stateful_step_count=8, deadline=None, derandomize=True
)
test_ingest_state_machine = IngestMachine.TestCase

"""A property of the identity (issue #20): over any sequence of content edits, touches,
renames, duplicate contents, machine switches (the journal kept, lost, or moved to another
Gateway) and lost replies, each distinct (content, request) executes at most once, and
every distinct one that an ingest reached is executed, by the Gateway's own counts."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_async import JournalMismatchError, RetryPolicy
from gateway_async.emulator import Emulator, Faults, FaultSpec
from gateway_async.emulator._png import encode

MODEL, SCOPE, JOB = "demo-image-embed", "prop", "prop-job"
CONTENTS = [encode(2, 2, bytes([n]) * 12) for n in range(3)]
NAMES = ["a.png", "b.png", "c.png"]
GUARD = 30.0

Step = tuple[Any, ...]
steps = st.one_of(
    st.tuples(st.just("edit"), st.sampled_from(NAMES), st.integers(0, len(CONTENTS) - 1)),
    st.tuples(st.just("touch"), st.sampled_from(NAMES)),
    st.tuples(st.just("rename"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
    st.tuples(
        st.just("ingest"),
        st.sampled_from(["kept", "lost", "none", "other gateway"]),
        st.booleans(),  # replies lost
    ),
)


class World:
    """One Gateway (and another one, for a journal moved there), a folder, a journal."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder = root / "photos"
        self.folder.mkdir()
        for name, content in zip(NAMES, CONTENTS, strict=True):
            (self.folder / name).write_bytes(content)
        self.journal = root / "j.db"
        self.emu = Emulator(initial_balance=Decimal("1000"))
        self.reached: set[str] = set()  # contents an ingest got to run
        self.bound: str | None = None  # the Gateway the journal belongs to: "home", "other"

    def contents(self) -> set[str]:
        return {hashlib.sha256(p.read_bytes()).hexdigest() for p in self.folder.iterdir()}

    async def step(self, step: Step) -> None:
        kind = step[0]
        if kind == "edit":
            (self.folder / step[1]).write_bytes(CONTENTS[step[2]])
        elif kind == "touch" and (self.folder / step[1]).exists():
            os.utime(self.folder / step[1], ns=(1, 1))
        elif kind == "rename" and (self.folder / step[1]).exists():
            (self.folder / step[1]).rename(self.folder / step[2])
        elif kind == "ingest":
            await self.ingest(step[1], lost=step[2])

    async def ingest(self, journal: str, *, lost: bool) -> None:
        if journal == "lost":
            for path in self.root.glob("j.db*"):
                path.unlink()
            self.bound = None
        if journal == "other gateway":
            async with Emulator() as other, other.client() as gw:
                await self._ingest(gw, self.journal)  # binds a fresh journal there, or refused
            self.bound = self.bound or "other"
            return
        lose = Faults(routes={"POST /api/runs": FaultSpec(lost_reply=1.0)})
        self.emu.set_faults(lose if lost else None)
        use = None if journal == "none" else self.journal
        async with self.emu.client(retry=RetryPolicy(max_retries=0)) as gw:
            reached = self.contents()
            await self._ingest(gw, use)
            if use is None or self.bound in (None, "home"):  # else: refused, nothing ran
                self.reached |= reached
                self.bound = self.bound if use is None else "home"
        self.emu.set_faults(None)

    async def _ingest(self, gw: Any, journal: Path | None) -> None:
        files = sorted(self.folder.iterdir())
        options: dict[str, Any] = {"model": MODEL, "scope": SCOPE, "job": JOB}
        if journal is not None:
            options["journal"] = journal
        try:
            items = gw.ingest(files, **options)
            await asyncio.wait_for(_drain(items), GUARD)
        except JournalMismatchError:
            pass  # a journal of the other Gateway: refused before any upload or run


async def _drain(items: Any) -> None:
    async for _ in items:
        pass


@settings(max_examples=12, deadline=None, derandomize=True)
@given(st.lists(steps, min_size=1, max_size=6))
def test_each_content_and_request_executes_at_most_once_and_every_one_reached_does(
    plan: list[Step],
) -> None:
    root = Path(tempfile.mkdtemp(prefix="identity-property-"))
    try:
        asyncio.run(_check(World(root), plan))
    finally:
        shutil.rmtree(root)


async def _check(world: World, plan: list[Step]) -> None:
    await world.emu.start()
    try:
        for step in plan:
            await world.step(step)
        # A last clean run, without the journal if it now belongs to the other Gateway.
        await world.ingest("none" if world.bound == "other" else "kept", lost=False)
        stats = world.emu.stats
        assert set(stats.executions_by_idempotency_key.values()) <= {1}
        assert stats.executions == len(world.reached), (plan, stats.executions)
        assert stats.index_size(MODEL, SCOPE) == len(world.reached)
    finally:
        await world.emu.close()

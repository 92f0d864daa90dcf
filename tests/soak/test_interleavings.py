"""Interleavings explored by seed: the ingest, the transport and the budget under
``InterleavingLoop`` (seeded order of ready task steps, virtual time), against the emulator
with seeded faults (latency, 503, 429, resets, lost replies), a hostile stub whose runs answer
late or never, and hostile observers.

Each seed draws one plan (the sources, the stages' sizes, a budget, a journal and a rerun,
how the consumer behaves: drains, breaks out, is cancelled, is closed from another task,
has a rival, or closes the client under runs in flight) and checks after it: the consumer
ended, no task is left, each idempotency key executed at most once (and a journaled rerun
executed nothing already done), and the spend stayed under ``max_spend``.

``GATEWAY_INTERLEAVE_SEEDS`` seeds run (300 in ``make test``, many more in ``make soak``);
``GATEWAY_INTERLEAVE_SEED=n`` replays one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import re
import warnings
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from yarl import URL

from gateway_async import (
    APIResponseValidationError,
    ConfigurationError,
    Gateway,
    GatewayError,
    RetryPolicy,
    Run,
    RunRequest,
)
from gateway_async.emulator import Emulator, Faults, FaultSpec
from gateway_async.pipeline import Ingest, IngestEvent, IngestItem
from tests.conftest import TEST_KEY, reply, serve_on_loopback
from tests.core.test_transport import RUN

from ._interleave import InterleavingLoop

pytestmark = pytest.mark.soak

SEEDS = int(os.environ.get("GATEWAY_INTERLEAVE_SEEDS", "300"))
ONE_SEED = os.environ.get("GATEWAY_INTERLEAVE_SEED")
MODEL, SCOPE = "demo-image-embed", "explore"
PRICE = Decimal("0.0010")
GUARD = 3600.0  # virtual seconds: an ingest of a few items that takes longer is hung
RETRY = RetryPolicy(max_retries=4, base_delay=0.001, max_delay=0.01)
SHAPES = ("drain", "break", "cancel", "closer", "rival", "stop", "close_client")


@attrs.frozen
class Plan:
    """What one seed does."""

    n: int
    shape: str
    at: int  # items or loop steps before the shape's action
    uploads: int
    runs: int
    ordered: bool
    max_spend: Decimal | None
    journal: bool
    rerun: bool
    faults: Faults
    raising_observers: bool
    stub: bool  # close_client: against a hostile stub instead of the emulator

    @classmethod
    def draw(cls, seed: int) -> Plan:
        rng = random.Random(seed)
        faults = FaultSpec(
            latency=(0.0, rng.choice((0.0, 0.005, 0.05))),
            error_503=rng.choice((0.0, 0.1)),
            error_429=rng.choice((0.0, 0.05)),  # with Retry-After: 0
            reset=rng.choice((0.0, 0.05)),
            lost_reply=rng.choice((0.0, 0.0, 0.1, 0.3)),
        )
        return cls(
            n=rng.randint(1, 8),
            shape=rng.choice(SHAPES),
            at=rng.randint(0, 12),
            uploads=rng.randint(1, 3),
            runs=rng.randint(1, 4),
            ordered=rng.random() < 0.3,
            max_spend=rng.choice((None, None, PRICE * rng.randint(0, 6))),
            journal=rng.random() < 0.4,
            rerun=rng.random() < 0.5,
            faults=Faults(seed=seed, routes={"*": faults}),
            raising_observers=rng.random() < 0.3,
            stub=rng.random() < 0.5,
        )


SERVERS: set[int] = set()  # the listening ports of the emulators and stubs so far


def explore(seed: int, root: Path) -> None:
    """Run seed ``seed`` on a fresh ``InterleavingLoop``; an AssertionError names a broken
    promise, ``Stuck`` or ``TimeoutError`` a hang."""
    loop = InterleavingLoop(seed)
    root.mkdir(parents=True, exist_ok=True)
    with unclosed_by_the_client():
        try:
            loop.run_until_complete(_guarded(Plan.draw(seed), root))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()


@contextlib.contextmanager
def unclosed_by_the_client(collect: bool = False) -> Iterator[None]:
    """Fail on a socket the client left open (it speaks when it is freed: at once, or at
    ``gc.collect()`` if ``collect``); other warnings go on as they were."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
        if collect:
            gc.collect()
    leaks = [str(w.message) for w in caught if not _servers_own(w)]
    assert not leaks, f"left open by the client: {leaks}"
    for other in caught:
        if not issubclass(other.category, ResourceWarning):
            warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)


def _servers_own(caught: warnings.WarningMessage) -> bool:
    """A socket of the emulator's or the stub's side (a server that did not close an
    accepted connection in some interleaving is the test server's affair, not the SDK's)."""
    if not issubclass(caught.category, ResourceWarning):
        return True  # not a leak: re-raised as it was (see ``explore``)
    said = re.search(r"laddr=\('[^']*', (\d+)\)", str(caught.message))
    if said is not None:  # an unclosed socket (already unusable: its repr keeps laddr)
        return int(said[1]) in SERVERS
    local = getattr(caught.source, "get_extra_info", lambda _: None)("sockname")
    return isinstance(local, tuple) and local[1] in SERVERS  # an unclosed transport


async def _guarded(plan: Plan, root: Path) -> None:
    try:
        async with asyncio.timeout(GUARD):
            await _run_plan(plan, root)
    except TimeoutError:
        raise AssertionError(f"hung: still waiting after {GUARD:g} virtual seconds") from None
    assert not sdk_tasks(), f"tasks left behind: {sdk_tasks()}"


def sdk_tasks() -> list[asyncio.Task[Any]]:
    """Live tasks running the SDK's code (the emulator's server tasks are its own affair)."""
    found = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        where = "" if code is None else code.co_filename
        if not task.done() and "gateway_async" in where and "emulator" not in where:
            found.append(task)
    return found


async def _run_plan(plan: Plan, root: Path) -> None:
    sources = [f"seed {root.name} item {i}".encode() for i in range(plan.n)]
    journal = str(root / "journal.db") if plan.journal else None
    async with Emulator(faults=plan.faults) as emu:
        SERVERS.update(URL(url).port or 0 for url in (emu.base_url, emu.storage_url))
        if plan.shape == "close_client" and plan.stub:
            await _close_under_stub(plan)
        elif plan.shape == "close_client":
            await _close_under_runs(emu.client(retry=RETRY), plan)
        else:
            first = await _ingest_once(emu, plan, sources, journal)
            if plan.rerun and journal is not None:
                before = emu.stats.executions
                await _ingest_once(emu, attrs.evolve(plan, shape="drain"), sources, journal)
                done = {item.index for item in first if item.ok}
                # A rerun may execute what did not succeed; never what did.
                assert emu.stats.executions - before <= plan.n - len(done)
        executions = emu.stats.executions_by_idempotency_key
        assert all(count <= 1 for count in executions.values()), executions
        if plan.max_spend is not None and plan.shape != "close_client":
            assert emu.stats.charged_total <= plan.max_spend * (2 if plan.rerun else 1)


def _observers(plan: Plan) -> dict[str, Any]:
    """Hooks and a callback that raise, CancelledError included, when the plan says so."""
    if not plan.raising_observers:
        return {}

    def hook(_: object) -> None:
        raise asyncio.CancelledError

    def on_event(event: IngestEvent) -> None:
        if event.index % 2:
            raise RuntimeError("observer bug")

    return {"hooks": {"request": [hook], "response": [hook]}, "on_event": on_event}


async def _ingest_once(
    emu: Emulator, plan: Plan, sources: list[bytes], journal: str | None
) -> list[IngestItem]:
    observers = _observers(plan)
    async with emu.client(retry=RETRY, event_hooks=observers.get("hooks")) as gw:
        ingest = gw.ingest(
            sources,
            model=MODEL,
            scope=SCOPE,
            upload_concurrency=plan.uploads,
            run_concurrency=plan.runs,
            ordered=plan.ordered,
            max_spend=plan.max_spend,
            journal=journal,
            on_event=observers.get("on_event"),
        )
        items = await _consume(plan, ingest)
        assert not sdk_tasks(), f"the ingest left tasks behind: {sdk_tasks()}"
        indices = [item.index for item in items]
        assert len(indices) == len(set(indices)), f"an item handed out twice: {indices}"
        if plan.shape == "drain":
            assert sorted(indices) == list(range(len(sources))) or ingest.summary.stopped
            assert ingest.summary.finished == len(items)
        if plan.ordered and plan.shape == "drain":
            assert indices == sorted(indices)
    return items


async def _consume(plan: Plan, ingest: Ingest) -> list[IngestItem]:
    """Consume ``ingest`` as the plan's shape says; every shape must end."""
    items: list[IngestItem] = []
    if plan.shape == "drain":
        await _take(ingest, items, None)
    elif plan.shape == "break":
        async with ingest:
            await _take(ingest, items, plan.at)
    elif plan.shape == "stop":
        await _take(ingest, items, plan.at)
        ingest.stop()
        await _take(ingest, items, None)
    elif plan.shape == "cancel":
        consumer = asyncio.create_task(_take(ingest, items, None))
        await _steps(plan.at)
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    elif plan.shape == "closer":
        consumer = asyncio.create_task(_take(ingest, items, None))
        await _steps(plan.at % 3)  # the narrow race: a close around the runner's first step
        await ingest.aclose()
        await consumer
    elif plan.shape == "rival":
        rival: list[IngestItem] = []
        outcomes = await asyncio.gather(
            _take(ingest, items, None), _take(ingest, rival, None), return_exceptions=True
        )
        for outcome in outcomes:
            assert outcome is None or isinstance(outcome, ConfigurationError), outcome
        items += rival
    await ingest.aclose()
    return items


async def _take(ingest: Ingest, into: list[IngestItem], limit: int | None) -> None:
    """Take items until ``limit`` (None: the end); a doom's error ends it too."""
    with contextlib.suppress(GatewayError):
        async for item in ingest:
            into.append(item)
            if limit is not None and len(into) >= limit:
                return
    if isinstance(ingest, AsyncIterator):  # the end is a state: asked again, it holds
        with contextlib.suppress(StopAsyncIteration, GatewayError):
            await anext(ingest)


async def _steps(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def _close_under_stub(plan: Plan) -> None:
    """``_close_under_runs`` against a hostile stub: each run is answered after 0 to 0.3
    virtual seconds, or never, as drawn per request from the plan's seed."""
    rng = random.Random(plan.faults.seed)

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        if rng.random() < 0.3:
            await asyncio.Event().wait()  # never answers: only the close ends this call
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        return await reply(200, RUN)(request)

    app = web.Application()
    app.router.add_post("/api/runs", handler)
    runner, url = await serve_on_loopback(app)
    SERVERS.add(URL(url).port or 0)
    try:
        await _close_under_runs(Gateway(api_key=TEST_KEY, base_url=url, retry=RETRY), plan)
    finally:
        await runner.cleanup()


async def _close_under_runs(gw: Gateway, plan: Plan) -> None:
    """The transport: runs in flight while the client closes, ``plan.at`` steps in, with
    a grace of 0 to 0.2 virtual seconds. Each ends with its Run or a typed error, never a
    misread answer, and none is left running when ``aclose`` returns."""
    requests = [
        RunRequest(model="demo-echo", input={"text": f"{i}"}, idempotency_key=f"key-{i}")
        for i in range(plan.n)
    ]
    calls = [asyncio.create_task(gw.runs.send(request)) for request in requests]
    await _steps(plan.at)
    await gw.aclose(timeout=plan.uploads * 0.1 - 0.1)
    # Every call that had reached the transport has ended; one not started yet is refused.
    assert not gw._transport.in_flight._calls, "a call outlived aclose()"
    for outcome in await asyncio.gather(*calls, return_exceptions=True):
        assert isinstance(outcome, Run | GatewayError), repr(outcome)
        misread = isinstance(outcome, APIResponseValidationError) and "closed" in str(outcome)
        assert not misread, outcome


def test_every_interleaving_ends_and_keeps_its_promises(tmp_path: Path) -> None:
    seeds = [int(ONE_SEED)] if ONE_SEED else list(range(SEEDS))
    broken: list[str] = []
    with unclosed_by_the_client(collect=True):  # what only a collection frees, once
        for seed in seeds:
            try:
                explore(seed, tmp_path / str(seed))
            except (AssertionError, Exception) as exc:
                shape = Plan.draw(seed).shape
                broken.append(f"seed {seed} ({shape}): {type(exc).__name__}: {exc}")
                if len(broken) >= 3:
                    break
    if broken:  # no traceback: the seed and the broken promise say it all
        pytest.fail("\n".join([*broken, "replay one: GATEWAY_INTERLEAVE_SEED=<seed>"]), False)

"""``gateway_async.ray`` without a Ray runtime: keys, argument checks, the import guard,
and the actor's client life cycle driven the way Ray drives it (built on one thread,
called on an event loop running in another)."""

from __future__ import annotations

import asyncio
import atexit
import gc
import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from gateway_async import (
    ConfigurationError,
    InvalidRequestError,
    RunRequest,
)
from gateway_async.emulator import Emulator
from gateway_async.ray import GatewayRunner, GatewayUploader, idempotency_key, map_runs, map_uploads
from tests.ray.conftest import EmulatorProcess


def echo(row: dict[str, Any]) -> RunRequest:
    return RunRequest(model="demo-echo", input={"i": row["id"]})


def test_keys_are_stable_and_distinct() -> None:
    """Same job and material: same key, whatever the form; anything else: another key."""
    key = idempotency_key("photos 2026/12", {"b": 1, "a": [1, 2]})
    assert key == idempotency_key("photos 2026/12", {"a": [1, 2], "b": 1})
    assert idempotency_key("j", "row-1") == idempotency_key("j", b"row-1")
    others = {idempotency_key("j", "row-2"), idempotency_key("k", "row-1"), key}
    assert len(others | {idempotency_key("j", "row-1")}) == 4
    assert key.startswith("photos_2026_12-")
    assert len(key) <= 255
    assert all(32 < ord(ch) < 127 for ch in key + idempotency_key("é" * 300, "x"))


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: idempotency_key("", "x"), "job"),
        (lambda: map_runs(None, job=" ", to_request=echo), "job"),  # type: ignore[arg-type]
        (lambda: map_runs(None, job="j", to_request="nope"), "to_request"),  # type: ignore[arg-type]
        (lambda: map_runs(None, job="j", to_request=echo, actors=0), "actors"),  # type: ignore[arg-type]
        (lambda: map_runs(None, job="j", to_request=echo, batch_size=True), "batch_size"),  # type: ignore[arg-type]
        (lambda: map_runs(None, job="j", to_request=echo, num_cpus=0), "num_cpus"),  # type: ignore[arg-type]
        (lambda: map_runs(None, job="j", to_request=echo, in_flight=-1), "in_flight"),  # type: ignore[arg-type]
        (lambda: map_runs(None, job="j", to_request=echo, concurrency=8), "concurrency"),  # type: ignore[arg-type]
        (lambda: map_runs(None, job="j", to_request=echo, actors=(3, 2)), "actors"),  # type: ignore[arg-type]
        (lambda: map_runs(None, job="j", to_request=echo, max_spend=5.0), "max_spend"),  # type: ignore[arg-type]
        (
            lambda: map_runs(None, job="j", to_request=echo, requests_per_second=0),
            "requests_per_second",
        ),  # type: ignore[arg-type]
        (
            lambda: map_runs(None, job="j", to_request=echo, max_error_fraction=1),
            "max_error_fraction",
        ),  # type: ignore[arg-type]
        (
            lambda: map_runs(None, job="j", to_request=echo, ray_remote_args={"num_cpus": 1}),
            "ray_remote_args",
        ),  # type: ignore[arg-type]
        (lambda: map_runs(None, job="j", to_request=echo, on_error="ignore"), "on_error"),  # type: ignore[arg-type]
        (lambda: map_runs(None, job="j", to_request=echo), "ds"),  # type: ignore[arg-type]
        (lambda: map_uploads([], job="j", path_column=""), "path_column"),  # type: ignore[arg-type]
        (lambda: map_uploads([], job="j", key_column=3), "key_column"),  # type: ignore[arg-type]
        (lambda: GatewayRunner(job="j", to_request=echo, gateway_kwargs=[1]), "gateway_kwargs"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_fail_on_the_driver(call: Any, field: str) -> None:
    """Each bad argument raises InvalidRequestError naming it, before Ray runs anything."""
    with pytest.raises(InvalidRequestError) as info:
        call()
    assert info.value.field == field


def test_classes_build_without_credentials_and_hide_a_given_key() -> None:
    """Building needs no credentials (only the workers do); a given key never shows."""
    uploader = GatewayUploader(job="j")
    runner = GatewayRunner(job="j", to_request=echo, api_key="gk_visible_secret")
    assert "gk_visible_secret" not in repr(runner) + repr(vars(runner)) + repr(uploader)


def test_import_without_ray_says_how_to_install() -> None:
    """Without Ray, importing the module raises ImportError with the pip command, and
    ``import gateway_async`` never imports Ray or pyarrow."""
    code = (
        "import sys\n"
        "import gateway_async\n"
        "assert 'ray' not in sys.modules and 'pyarrow' not in sys.modules\n"
        "sys.modules['ray'] = None\n"
        "try:\n"
        "    import gateway_async.ray\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'gateway-async[ray]'" in out.stdout


@pytest.fixture
def actor_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop on its own thread, as Ray Data runs an async UDF's calls."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def test_actor_client_lives_in_its_loop_and_closes_with_the_actor(
    emulator: EmulatorProcess, actor_loop: asyncio.AbstractEventLoop
) -> None:
    """The Gateway is created on the first call, in the calling loop, and closed on that
    loop when the UDF object is dropped (as Ray's graceful actor exit does): no warning
    about an unclosed session (warnings are errors here)."""
    runner = GatewayRunner(
        job="t-units", to_request=echo, api_key=emulator.api_key, base_url=emulator.base_url
    )
    batch = pa.table({"id": [1, 2, 3]})
    out = asyncio.run_coroutine_threadsafe(runner(batch), actor_loop).result(60)
    assert out.column("run_status").to_pylist() == ["succeeded"] * 3
    gateway = runner._gateway
    assert gateway is not None
    del runner
    gc.collect()
    closed = asyncio.run_coroutine_threadsafe(
        gateway.runs.create(model="demo-echo", input={}), actor_loop
    )
    with pytest.raises(ConfigurationError, match="closed"):
        closed.result(60)


def test_a_process_exiting_with_the_udf_alive_closes_its_gateway_at_exit(
    emulator: EmulatorProcess,
    actor_loop: asyncio.AbstractEventLoop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ray may tear a worker down with the UDF still referenced: the atexit hook the first
    call registered closes the Gateway on its loop while that loop's thread still runs. At
    interpreter finalization that thread can no longer run, and ``__del__`` returns at once
    rather than waiting for it."""
    hooks: list[tuple[Any, tuple[Any, ...]]] = []
    monkeypatch.setattr(atexit, "register", lambda hook, *args: hooks.append((hook, args)))
    runner = GatewayRunner(
        job="t-exit", to_request=echo, api_key=emulator.api_key, base_url=emulator.base_url
    )
    batch = pa.table({"id": [1]})
    asyncio.run_coroutine_threadsafe(runner(batch), actor_loop).result(60)
    gateway = runner._gateway
    assert gateway is not None
    [(hook, args)] = hooks
    with monkeypatch.context() as finalizing:
        finalizing.setattr(sys, "is_finalizing", lambda: True)
        runner._close_now()  # returns at once: the loop's thread is frozen at finalization
    assert not gateway._transport._closed  # nothing was sent to the loop to wait for
    runner._gateway = gateway  # (it gave the Gateway up; the exit hook closes it below)
    hook(*args)  # what the interpreter runs at exit, before finalization
    assert runner._gateway is None
    closed = asyncio.run_coroutine_threadsafe(
        gateway.runs.create(model="demo-echo", input={}), actor_loop
    )
    with pytest.raises(ConfigurationError, match="closed"):
        closed.result(60)


async def test_a_402_mid_batch_makes_rows_and_the_rest_is_not_sent() -> None:
    """A 402 is no longer raised out of the batch (which lost every row already paid
    for): the rows before it are written, the row that met it says so, and the rows
    after it are not sent at all (the Gateway sees no more calls)."""
    batch = pa.table({"id": list(range(8))})
    async with Emulator(initial_balance=Decimal("0.0025")) as emu:  # 2 runs of 0.0010
        runner = GatewayRunner(
            job="t-402", to_request=echo, api_key=emu.api_key, base_url=emu.base_url, in_flight=1
        )
        try:
            out = await runner(batch)
        finally:
            await runner.aclose()
        assert emu.stats.executions == 2
        assert emu.stats.requests_by_route["POST /api/runs"] == 3
    kinds = out.column("run_error_type").to_pylist()
    assert kinds == [None, None, "InsufficientFundsError"] + ["NotAttemptedError"] * 5
    assert out.column("run_status").to_pylist()[:2] == ["succeeded", "succeeded"]
    assert "402 insufficient_funds" in out.column("run_error").to_pylist()[2]


async def test_a_worker_without_credentials_still_stops_the_job() -> None:
    """A client that cannot be built dooms every row: raised, not rows."""
    with pytest.raises(ConfigurationError, match="GATEWAY_API_KEY"):
        await GatewayRunner(job="t-no-key", to_request=echo)(pa.table({"id": [1, 2, 3]}))

"""A deliberately cheap Gateway stand-in for benchmarks, run in its own process.

It answers ``POST /api/runs`` with a fixed run body, doing as little work as possible so
that the client's cost shows. ``holding_server`` is the same answer held back on demand:
after ``POST /arm?n=N`` it keeps every run's reply until all N have arrived (``GET
/arrived`` answers then) and ``POST /release`` lets them go, so a client can be looked at
with N calls in flight at once.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import resource
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

RUN_BODY = json.dumps(
    {
        "id": "run_bench",
        "model": "demo-echo",
        "mode": "execute",
        "scope": None,
        "status": "succeeded",
        "output": {"echo": {"i": 1}},
        "error": None,
        "usage": {"credits": "0.0010", "duration_ms": 1},
        "created_at": "2026-11-24T12:00:00Z",
    }
).encode()


BACKLOG = 4096  # aiohttp's default (128) drops SYNs when thousands connect at once


def _serve(sock: socket.socket) -> None:
    from aiohttp import web

    async def runs(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=RUN_BODY, content_type="application/json")

    app = web.Application()
    app.router.add_post("/api/runs", runs)
    asyncio.run(_forever(app, sock))


async def _forever(app: web.Application, sock: socket.socket) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock, backlog=BACKLOG).start()
    await asyncio.Event().wait()


class Hold:
    """The holding server's state: how many runs to hold, how many arrived, and when."""

    def __init__(self, target: int = 0) -> None:
        self.target = target  # 0: answer at once (not armed)
        self.arrived = 0
        self.all_in = asyncio.Event()
        self.release = asyncio.Event()


def _serve_holding(sock: socket.socket) -> None:
    from aiohttp import web

    raise_open_files()
    hold = Hold()
    ok = web.Response

    async def runs(request: web.Request) -> web.Response:
        await request.read()
        if hold.target:
            hold.arrived += 1
            if hold.arrived >= hold.target:
                hold.all_in.set()
            await hold.release.wait()
        return ok(body=RUN_BODY, content_type="application/json")

    async def arm(request: web.Request) -> web.Response:
        nonlocal hold
        hold = Hold(int(request.query["n"]))
        return ok()

    async def arrived(request: web.Request) -> web.Response:
        await hold.all_in.wait()
        return ok(text=str(hold.arrived))

    async def release(request: web.Request) -> web.Response:
        hold.release.set()
        return ok()

    app = web.Application()
    app.router.add_post("/api/runs", runs)
    app.router.add_post("/arm", arm)
    app.router.add_get("/arrived", arrived)
    app.router.add_post("/release", release)
    asyncio.run(_forever(app, sock))


def raise_open_files() -> int:
    """Raise this process's open-file limit to its hard limit; return the limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@contextmanager
def _forked(serve: Callable[[socket.socket], None]) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(BACKLOG)
    port = sock.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=serve, args=(sock,), daemon=True)
    proc.start()
    sock.close()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.join(5)


def cheap_server() -> AbstractContextManager[str]:
    """Start the server in a child process; yield its base URL; stop it afterwards."""
    return _forked(_serve)


def holding_server() -> AbstractContextManager[str]:
    """``cheap_server`` whose replies can be held (``/arm``, ``/arrived``, ``/release``)."""
    return _forked(_serve_holding)

"""A deliberately cheap Gateway stand-in for benchmarks, run in its own process.

It answers ``POST /api/runs`` with a fixed run body and ``GET /api/billing/wallet`` with a
fixed wallet, doing as little work as possible so that the client's cost shows.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
from collections.abc import Iterator
from contextlib import contextmanager

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


def _serve(sock: socket.socket) -> None:
    import asyncio

    from aiohttp import web

    async def runs(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=RUN_BODY, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/api/runs", runs)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        await asyncio.Event().wait()

    asyncio.run(main())


@contextmanager
def cheap_server() -> Iterator[str]:
    """Start the server in a child process; yield its base URL; stop it afterwards."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_serve, args=(sock,), daemon=True)
    proc.start()
    sock.close()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.join(5)

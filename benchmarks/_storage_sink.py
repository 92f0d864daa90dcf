"""A cheap upload target for benchmarks: the Gateway's upload calls and a PUT sink.

One child process (forked, like ``_server.py``) listens on two loopback ports, as a real
deployment has the API and object storage on different origins:

- API port: ``POST /api/media/upload/init`` (201, a ticket pointing at the PUT port) and
  ``POST /api/media/upload/complete`` (200, a MediaRef body; 409 if the PUT was short);
- PUT port: ``PUT /put/{upload_id}`` reads and discards the body as fast as aiohttp can,
  counts it, and answers 200 (400 when fewer or more bytes than Content-Length arrived).

It checks no credentials and hashes nothing, so that the client's cost shows.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

READ_BUFSIZE = 1 << 20  # aiohttp's default 256 KiB pauses the socket more often


class SinkUrls(NamedTuple):
    base: str  # the API base URL (init, complete)
    put: str  # where PUTs go: ``{put}/put/{any id}``
    pid: int  # the sink process, to read its CPU time from /proc


def _serve(api_sock: socket.socket, put_sock: socket.socket, put_url: str) -> None:
    import asyncio

    from aiohttp import web

    ids = itertools.count()
    uploads: dict[str, dict[str, Any]] = {}
    received: dict[str, int] = {}

    def reply(data: dict[str, Any], status: int = 200) -> web.Response:
        return web.Response(
            body=json.dumps(data).encode(), status=status, content_type="application/json"
        )

    async def init(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        upload_id = f"upl_{next(ids)}"
        uploads[upload_id] = body
        ticket = {
            "upload_id": upload_id,
            "upload_url": f"{put_url}/put/{upload_id}",
            "method": "PUT",
            "headers": {"Content-Type": body["content_type"]},
            "expires_at": "2099-01-01T00:00:00Z",
        }
        return reply(ticket, 201)

    async def put(request: web.Request) -> web.Response:
        stream, size = request.content, 0
        while chunk := await stream.readany():
            size += len(chunk)
        received[request.match_info["upload_id"]] = size
        if size != request.content_length:
            return web.Response(status=400, text="IncompleteBody")
        return web.Response(headers={"ETag": '"sink"'})

    async def complete(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        upload_id = body["upload_id"]
        declared = uploads.pop(upload_id)
        if received.pop(upload_id, None) != declared["size"]:
            return reply({"error": {"code": "conflict", "message": "short PUT"}}, 409)
        media = {
            "media_ref": f"mref_{upload_id}",
            "size": declared["size"],
            "content_type": declared["content_type"],
            "sha256": body.get("sha256") or declared.get("sha256"),
            "filename": declared["filename"],
        }
        return reply(media)

    async def main() -> None:
        api = web.Application()
        api.router.add_post("/api/media/upload/init", init)
        api.router.add_post("/api/media/upload/complete", complete)
        storage = web.Application()
        storage.router.add_put("/put/{upload_id}", put)
        apps = (api, storage)
        runners = [web.AppRunner(app, access_log=None, read_bufsize=READ_BUFSIZE) for app in apps]
        for runner, sock in zip(runners, (api_sock, put_sock), strict=True):
            await runner.setup()
            await web.SockSite(runner, sock).start()
        await asyncio.get_running_loop().create_future()  # serve until terminated

    asyncio.run(main())


def cpu_seconds(pid: int) -> float:
    """User+sys CPU time of a process so far (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _listening() -> tuple[socket.socket, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextmanager
def storage_sink() -> Iterator[SinkUrls]:
    """Start the sink in a child process; yield its two URLs; stop it afterwards."""
    (api_sock, base), (put_sock, put_url) = _listening(), _listening()
    child = multiprocessing.get_context("fork").Process(
        target=_serve, args=(api_sock, put_sock, put_url), daemon=True
    )
    child.start()
    api_sock.close()
    put_sock.close()
    try:
        assert child.pid is not None
        yield SinkUrls(base, put_url, child.pid)
    finally:
        child.terminate()
        child.join(5)

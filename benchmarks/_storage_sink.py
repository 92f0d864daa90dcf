"""A cheap upload target for benchmarks: the Gateway's upload calls and a PUT sink.

One child process (forked, like ``_server.py``) listens on two loopback ports, as a real
deployment has the API and object storage on different origins:

- API port: ``POST /api/media/upload/init`` (201, a ticket pointing at the PUT port) and
  ``POST /api/media/upload/complete`` (200, a MediaRef body; 409 if the PUT was short);
- PUT port: ``PUT /put/{upload_id}`` reads and discards the body into one reused buffer
  (``PutSink``, a plain asyncio protocol), counts it, and answers 200; ``complete`` then
  answers 409 when fewer bytes than the declared size arrived.

With ``part`` > 0 it speaks contract version 2: ``init`` answers parts of ``part`` bytes,
each PUT to ``/put/{upload_id}-{n}``, and ``complete`` checks their sum.

Object stores cap what one connection moves (tens to a few hundred MB/s each), which is
what parallel parts are for; ``rate`` (bytes/s, 0: none) caps each PUT connection the same
way, by pausing its reads, and ``latency`` (seconds) delays every answer, API and PUT, as a
distant region would. Without them, on loopback, sender and sink share the CPU and parts
cannot win.

It checks no credentials and hashes nothing, so that the client's cost shows.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, NamedTuple

READ_SIZE = 1 << 20  # one recv_into per MiB, into one reused buffer
HEAD_PIECE = 8192
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
OK = b'HTTP/1.1 200 OK\r\nETag: "sink"\r\nContent-Length: 0\r\n\r\n'
SHORT = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 14\r\n\r\nIncompleteBody"


class SinkUrls(NamedTuple):
    base: str  # the API base URL (init, complete)
    put: str  # where PUTs go: ``{put}/put/{any id}``
    pid: int  # the sink process, to read its CPU time from /proc


class Shape(NamedTuple):
    """How the sink behaves like a remote object store: per-connection rate, added latency."""

    rate: float = 0.0  # bytes/s per PUT connection; 0: as fast as the CPU allows
    latency: float = 0.0  # seconds before every answer


UNSHAPED: Final = Shape()


def _serve(
    api_sock: socket.socket, put_sock: socket.socket, put_url: str, part: int, shape: Shape
) -> None:
    from aiohttp import web

    ids = itertools.count()
    uploads: dict[str, dict[str, Any]] = {}
    received: dict[str, int] = {}

    async def reply(data: dict[str, Any], status: int = 200) -> web.Response:
        if shape.latency:
            await asyncio.sleep(shape.latency)
        return web.Response(
            body=json.dumps(data).encode(), status=status, content_type="application/json"
        )

    async def init(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        upload_id = f"upl_{next(ids)}"
        uploads[upload_id] = body
        ticket: dict[str, Any] = {
            "upload_id": upload_id,
            "method": "PUT",
            "headers": {"Content-Type": body["content_type"]},
            "expires_at": "2099-01-01T00:00:00Z",
        }
        if part and body["size"] > part:
            numbers = range(1, -(-body["size"] // part) + 1)
            urls = [
                {"part_number": n, "upload_url": f"{put_url}/put/{upload_id}-{n}"} for n in numbers
            ]
            ticket.update(part_size=part, parts=urls)
        else:
            ticket["upload_url"] = f"{put_url}/put/{upload_id}"
        return await reply(ticket, 201)

    async def complete(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        upload_id = body["upload_id"]
        declared = uploads.pop(upload_id)
        parts = [key for key in received if key.split("-")[0] == upload_id]
        if sum(received.pop(key) for key in parts) != declared["size"]:
            return await reply({"error": {"code": "conflict", "message": "short PUT"}}, 409)
        media = {
            "media_ref": f"mref_{upload_id}",
            "size": declared["size"],
            "content_type": declared["content_type"],
            "sha256": body.get("sha256") or declared.get("sha256"),
            "filename": declared["filename"],
        }
        return await reply(media)

    async def main() -> None:
        api = web.Application()
        api.router.add_post("/api/media/upload/init", init)
        api.router.add_post("/api/media/upload/complete", complete)
        runner = web.AppRunner(api, access_log=None)
        await runner.setup()
        await web.SockSite(runner, api_sock).start()
        loop = asyncio.get_running_loop()
        await loop.create_server(lambda: PutSink(received, shape), sock=put_sock)
        await loop.create_future()  # serve until terminated

    asyncio.run(main())


class PutSink(asyncio.BufferedProtocol):
    """HTTP/1.1 PUTs with a Content-Length, counted and discarded.

    Not aiohttp: its parser copies each read into a new bytes object and a StreamReader,
    which made the sink, not the client, the bottleneck (0.4-1.3 CPU-s/GiB). Here each
    read lands in one reused 1 MiB buffer, so the sink costs little more than the kernel's
    copy.
    """

    def __init__(self, received: dict[str, int], shape: Shape = UNSHAPED) -> None:
        self._received = received
        self._shape = shape
        self._started = 0.0  # when the current body's first byte arrived (rate cap)
        self._loop = asyncio.get_running_loop()
        self._buffer = memoryview(bytearray(READ_SIZE))
        self._head = bytearray()
        self._left = -1  # body bytes still to come; -1 while reading a request head
        self._upload_id = ""
        self._declared = 0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        data = self._buffer[:nbytes]
        while data:
            if self._left < 0:
                data = self._read_head(data)
            else:
                used = min(self._left, len(data))
                self._left -= used
                data = data[used:]
                if not self._left:
                    self._answer(OK)
                elif self._shape.rate:
                    self._throttle()

    def _throttle(self) -> None:
        """Pause reading until this connection is back under its rate: the kernel's buffers
        fill and TCP slows the sender, as a capped object store does."""
        assert self._transport is not None
        now = time.monotonic()
        if not self._started:
            self._started = now
        due = self._started + (self._declared - self._left) / self._shape.rate
        if due > now:
            self._transport.pause_reading()
            self._loop.call_later(due - now, self._transport.resume_reading)

    def eof_received(self) -> None:
        if self._left > 0:  # the client stopped before Content-Length bytes arrived
            self._answer(SHORT)

    def _read_head(self, data: memoryview) -> memoryview:
        """Collect the request head; return what follows it (the start of the body)."""
        piece = data[:HEAD_PIECE]  # the body after the head is not copied
        before = len(self._head)
        self._head += piece
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            return data[len(piece) :]
        lines = self._head[:end].decode("latin-1").split("\r\n")
        self._head.clear()
        self._upload_id = lines[0].split()[1].rsplit("/", 1)[1]
        fields = {k.strip().lower(): v for k, v in (line.split(":", 1) for line in lines[1:])}
        self._declared = self._left = int(fields.get("content-length", "0"))
        if fields.get("expect", "").strip().lower() == "100-continue":  # curl -T asks
            self._send(CONTINUE)
        if not self._left:
            self._answer(OK)
        return data[end + 4 - before :]

    def _answer(self, reply: bytes) -> None:
        self._received[self._upload_id] = self._declared - max(self._left, 0)
        self._left = -1
        self._started = 0.0
        if self._shape.latency:
            self._loop.call_later(self._shape.latency, self._send, reply)
        else:
            self._send(reply)

    def _send(self, reply: bytes) -> None:
        assert self._transport is not None
        if not self._transport.is_closing():
            self._transport.write(reply)


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
def storage_sink(part: int = 0, shape: Shape = UNSHAPED) -> Iterator[SinkUrls]:
    """Start the sink in a child process; yield its two URLs; stop it afterwards.
    ``part`` > 0: larger uploads get parts of that size (contract version 2); ``shape``:
    a per-connection rate cap and added latency (none by default)."""
    (api_sock, base), (put_sock, put_url) = _listening(), _listening()
    child = multiprocessing.get_context("fork").Process(
        target=_serve, args=(api_sock, put_sock, put_url, part, shape), daemon=True
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

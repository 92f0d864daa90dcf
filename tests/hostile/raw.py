"""A raw asyncio loopback server that answers with exact bytes, for answers aiohttp.web
cannot produce (a malformed status line, a 70 KB header line, garbage).

Each connection: read one request (head, then ``Content-Length`` bytes of body, read at
the pace the server was told), write ``answer``, close. Nothing is left running after
``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

__all__ = ["InThread", "RawServer"]

T = TypeVar("T")

_PIECE: Final = 16 * 1024


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


class RawServer:
    """Answers every request with ``answer`` (bytes, or a function of the request head).

    ``rate``: read the request body at about this many bytes per second (a slow link).
    ``read_body=False``: never read the body at all (storage that stopped reading).
    ``rcvbuf``: the listening socket's receive buffer, so the kernel cannot hide either.
    ``read_ahead``: how much the server's stream reader takes off the socket before the
    ``rate`` reads it (asyncio's limit; 64 KiB by default, 8 KiB with ``rcvbuf``).
    ``tls``: serve HTTPS with this server context (see ``tls.py``).
    ``answer_after``: seconds between reading the whole body and answering (a slow server);
    None: never answer, until close().
    """

    def __init__(
        self,
        answer: bytes | Callable[[bytes], bytes] = b"",
        *,
        rate: float | None = None,
        read_body: bool = True,
        rcvbuf: int | None = None,
        tls: ssl.SSLContext | None = None,
        answer_after: float | None = 0.0,
        read_ahead: int | None = None,
    ) -> None:
        self.answer = answer
        self.read_ahead = read_ahead
        self.answer_after = answer_after
        self.tls = tls
        self.rate = rate
        self.read_body = read_body
        self.rcvbuf = rcvbuf
        self.heads: list[bytes] = []
        self.body_sizes: list[int] = []
        self.url = ""
        self._server: asyncio.Server | None = None
        self._handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._closing = asyncio.Event()

    async def start(self) -> RawServer:
        self._closing = asyncio.Event()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.rcvbuf is not None:  # before listen(), so the window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.bind(("127.0.0.1", 0))
        limit = _PIECE if self.rcvbuf is not None else 2**16  # a small window: small buffers
        limit = self.read_ahead or limit
        self._server = await asyncio.start_server(
            self._handle, sock=sock, ssl=self.tls, limit=limit
        )
        scheme = "https" if self.tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
        return self

    async def close(self) -> None:
        """Stop listening and end every exchange: a handler is woken, never cancelled
        (asyncio logs the cancelled task of a ``start_server`` callback as an error)."""
        if self._server is not None:
            self._server.close()
            self._closing.set()
            for writer in self._handlers.values():
                writer.transport.abort()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers[task] = writer
        try:
            await self._exchange(reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # the client hung up (or close() aborted the connection)
        finally:
            del self._handlers[task]
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.rcvbuf is not None and self.tls is not None:
            # asyncio's TLS layer reads ahead of the application (256 KiB by default): keep
            # it small, or a slow reader would look fast to the client's socket.
            writer.transport.set_read_buffer_limits(high=self.rcvbuf)
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        if not self.read_body:
            await self._closing.wait()  # never reads again, until close()
            return
        self.body_sizes.append(await self._read_body(reader, _content_length(head)))
        if self.answer_after is None:
            await self._closing.wait()
            return
        if self.answer_after:
            await asyncio.sleep(self.answer_after)  # the slow server itself
        answer = self.answer(head) if callable(self.answer) else self.answer
        writer.write(answer)
        await writer.drain()

    async def _read_body(self, reader: asyncio.StreamReader, size: int) -> int:
        """Read ``size`` bytes, at ``rate`` bytes/s when set: paced by the loop's clock, so
        a late wake-up reads more at once instead of slowing the average."""
        loop = asyncio.get_running_loop()
        started, got = loop.time(), 0
        while got < size:
            if self.rate is not None:
                due = started + got / self.rate
                await asyncio.sleep(max(0.0, due - loop.time()))  # the slow link itself
            got += len(await reader.readexactly(min(_PIECE, size - got)))
        return got


class InThread:
    """Serves a RawServer from an event loop of its own thread.

    The peer of a stall test must stop only when told to: on the test's own loop, a loop
    held up by a loaded machine would freeze the server too, and look like a stall.
    """

    def __init__(self, server: RawServer) -> None:
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="raw-server")

    async def start(self) -> RawServer:
        self._thread.start()
        await self._call(self.server.start())
        return self.server

    async def close(self) -> None:
        try:
            await self._call(self.server.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
            self._loop.close()

    async def _call(self, work: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

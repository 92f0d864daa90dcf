"""Small files (up to SMALL_FILE): checked and read whole where that is cheapest, never
letting the event loop wait for a disk.

A worker thread that makes system calls while the event loop is busy pays for each one: the
loop has to hand the GIL back every time (measured on a busy 2-core client: about 50 µs of
CPU per call, more than reading 100 KiB). So a small file is opened, sized and read on the
event loop when the kernel can serve it at once: the read is ``preadv2`` with
``RWF_NOWAIT``, which fails instead of waiting for the disk. A file that is not in the page
cache, a filesystem or platform without ``RWF_NOWAIT``, and every file of a client whose
opens took longer than ``SLOW_OPEN`` several times in a row (a network filesystem, a cold
disk) are checked and read in the client's file thread instead, in one trip.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from .._errors import InvalidRequestError, UploadError

__all__ = ["CHUNK_SIZE", "SMALL_FILE", "LocalFiles", "bad_source", "hexdigest", "version"]

# Larger files stream in reads of this size, read ahead by a thread (readahead.py). With
# that thread, 2 MiB reads measured the same as 1 MiB on 1 GiB, at twice the memory.
CHUNK_SIZE: Final = 1024 * 1024
# Up to this size a file is read whole and sent as one bytes body (the fastest for small
# files); reading it blocks the loop for at most ~0.2 ms when it comes from the page cache.
SMALL_FILE: Final = 1024 * 1024
NOWAIT: Final[int | None] = getattr(os, "RWF_NOWAIT", None)  # Linux 4.14+
SLOW_OPEN: Final = 0.001  # seconds: opening a file on a local disk takes microseconds
SLOW_OPENS: Final = 3  # slow opens in a row before the client's file work moves to its thread
# O_NONBLOCK: opening a FIFO must not wait for a writer (fstat then refuses it); O_BINARY:
# Windows would otherwise translate line endings.
_OPEN_FLAGS: Final = os.O_RDONLY | sum(
    getattr(os, flag, 0) for flag in ("O_CLOEXEC", "O_NONBLOCK", "O_BINARY")
)
_NO_NOWAIT: Final = frozenset({errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS})

Snapshot = tuple[os.stat_result, bytes | bytearray | None]


def bad_source(message: str, field: str = "source") -> InvalidRequestError:
    return InvalidRequestError(f"{field}: {message}", field=field)


class _WouldWait(Exception):
    """The read would wait for the disk; read in the thread instead."""


class _NoWaitUnsupported(_WouldWait):
    """This filesystem refuses RWF_NOWAIT; stop trying it on the loop."""


def _open_fd(path: Path) -> int:
    return os.open(path, _OPEN_FLAGS)


def _read_nowait(fd: int, size: int) -> bytearray:
    buf = bytearray(size)
    try:
        got = os.preadv(fd, [buf], 0, NOWAIT or 0)
    except BlockingIOError:
        raise _WouldWait from None
    except OSError as exc:
        if exc.errno in _NO_NOWAIT:
            raise _NoWaitUnsupported from None
        raise
    if got != size:  # partly cached, or the file shrank: the thread's read tells which
        raise _WouldWait
    return buf


def _read_all(fd: int, size: int) -> bytes:
    """Up to ``size`` bytes: network filesystems may answer one read with fewer."""
    parts: list[bytes] = []
    got = 0
    while got < size and (part := os.read(fd, size - got)):
        parts.append(part)
        got += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _open_checked(path: Path) -> tuple[int, os.stat_result]:
    """Open ``path`` and check that it is a regular file; the caller closes the fd."""
    try:
        fd = _open_fd(path)
    except FileNotFoundError:
        raise bad_source(f"{path} does not exist") from None
    except OSError as exc:
        raise bad_source(f"{path} cannot be read: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise bad_source(f"{path} is a directory; upload the files inside it one by one")
        if not stat.S_ISREG(info.st_mode):
            raise bad_source(f"{path} is not a regular file")
    except BaseException as exc:
        os.close(fd)
        if isinstance(exc, OSError):
            raise bad_source(f"{path} cannot be read: {exc.strerror}") from None
        raise
    return fd, info


def version(info: os.stat_result) -> tuple[int, int, int]:
    """What says a file is as it was: size, mtime and ctime. The ctime catches a writer that
    set the mtime back (``rsync --inplace -t``): no program can set a ctime."""
    return info.st_size, info.st_mtime_ns, info.st_ctime_ns


def _snapshot(path: Path, fd: int, info: os.stat_result, nowait: bool) -> bytes | bytearray:
    """The whole small file, consistent: its size, mtime and ctime after the read are those
    it had before. ``nowait``: raise _WouldWait rather than wait for the disk."""
    try:
        data = _read_nowait(fd, info.st_size) if nowait else _read_all(fd, info.st_size)
        after = os.fstat(fd)
    except OSError as exc:
        raise bad_source(f"{path} cannot be read: {exc.strerror}") from None
    if version(after) != version(info) or len(data) != info.st_size:
        raise UploadError(f"{path}: the file changed while it was being read; try again")
    return data


def inspect(path: Path, nowait: bool, opened: Callable[[float], None] | None = None) -> Snapshot:
    """Check ``path``; read it whole when it is small (up to SMALL_FILE). ``opened`` is
    told how long the open and its checks took."""
    started = time.perf_counter()
    fd, info = _open_checked(path)
    if opened is not None:
        opened(time.perf_counter() - started)
    try:
        return info, _snapshot(path, fd, info, nowait) if info.st_size <= SMALL_FILE else None
    finally:
        os.close(fd)


class LocalFiles:
    """One client's access to small files: on the loop while that is quick, else its thread."""

    def __init__(self) -> None:
        self.on_loop = NOWAIT is not None
        self._slow_opens = 0
        self._pool: ThreadPoolExecutor | None = None

    def pool(self) -> ThreadPoolExecutor:
        """The client's file thread. One thread, not the loop's shared pool: measured on
        2,000 x 100 KiB uploads, one thread took 25-30% more files/s than several."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="gateway-files")
        return self._pool

    def shutdown(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.shutdown(wait=False)  # a read in progress finishes and closes its file

    async def inspect(self, path: Path) -> Snapshot:
        """Check ``path`` and read it whole when small (see the module's docstring)."""
        if self.on_loop:
            try:
                return inspect(path, nowait=True, opened=self._opened)
            except _NoWaitUnsupported:
                self.on_loop = False
            except _WouldWait:
                pass
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool(), inspect, path, False)

    def _opened(self, seconds: float) -> None:
        """SLOW_OPENS slow opens in a row (a network filesystem, a cold disk) move this
        client's file work to its thread; one slow open (the VM paused) does not."""
        self._slow_opens = self._slow_opens + 1 if seconds > SLOW_OPEN else 0
        if self._slow_opens >= SLOW_OPENS:
            self.on_loop = False

    def sha256(self, data: bytes | bytearray | memoryview) -> asyncio.Future[str]:
        """The sha256 hex of ``data``, hashed in the file thread while the caller goes on."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self.pool(), hexdigest, data)


def hexdigest(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()

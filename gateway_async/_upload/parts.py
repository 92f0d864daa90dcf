"""Multipart wire types, the part planner, and each part as a Source of its own.

The planner is pure: it turns an init answer into the byte range of every part and refuses
an answer that does not cover the file exactly. A part of a path or a file object is a
window onto the file read with ``pread`` at its offset (several parts read one file at
once, each in its own read-ahead thread that also hashes it), so no part is ever held
whole; a part of bytes is a memoryview slice. Both stream through the same payload, storage
session and retry policy as a single PUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
from collections.abc import Callable
from datetime import datetime
from typing import IO, Any, Final

import attrs

from .._convert import structure
from .._errors import APIResponseValidationError
from ..models import UploadTicket
from .files import CHUNK_SIZE
from .sources import Source, check_unchanged

__all__ = [
    "MultipartTicket",
    "Part",
    "PartUrl",
    "PartsRefresh",
    "Reader",
    "UploadStatus",
    "hash_range",
    "memory_reader",
    "open_reader",
    "part_source",
    "plan",
    "plan_ticket",
    "structure_ticket",
]

ReadAt = Callable[[int, int], bytes]  # (offset, count) -> up to count bytes
_MAX_PARTS: Final = 10_000


@attrs.frozen(kw_only=True)
class PartUrl:
    """Where to PUT one part (pre-signed: a bearer secret until it expires)."""

    part_number: int
    upload_url: str = attrs.field(repr=False)


@attrs.frozen(kw_only=True)
class MultipartTicket:
    """The answer of ``upload/init`` from a version-2 server for a large file."""

    upload_id: str
    method: str
    headers: dict[str, str]
    expires_at: datetime
    part_size: int
    parts: tuple[PartUrl, ...]


@attrs.frozen(kw_only=True)
class PartsRefresh:
    """The answer of ``POST /api/media/upload/parts``."""

    parts: tuple[PartUrl, ...]
    expires_at: datetime


@attrs.frozen(kw_only=True)
class StoredPart:
    """A part that storage holds, as ``GET /api/media/upload/{upload_id}`` lists it."""

    part_number: int
    size: int
    etag: str


@attrs.frozen(kw_only=True)
class UploadStatus:
    """The answer of ``GET /api/media/upload/{upload_id}``."""

    upload_id: str
    status: str
    size: int
    expires_at: datetime
    part_size: int | None = None
    parts: tuple[StoredPart, ...] = ()


@attrs.frozen
class Part:
    """Part ``number`` (from 1) covers ``size`` bytes from ``offset``."""

    number: int
    offset: int
    size: int


def structure_ticket(data: Any, request_id: str | None) -> UploadTicket | MultipartTicket:
    """A version-1 ticket, or a multipart one when the server answered ``parts``."""
    if isinstance(data, dict) and data.get("parts") is not None:
        return structure(data, MultipartTicket, request_id=request_id)
    return structure(data, UploadTicket, request_id=request_id)


def plan(size: int, part_size: int) -> tuple[Part, ...]:
    """Every part's byte range: parts of ``part_size`` bytes, the last one shorter."""
    return tuple(
        Part(n, offset, min(part_size, size - offset))
        for n, offset in enumerate(range(0, size, part_size), start=1)
    )


def plan_ticket(size: int, ticket: MultipartTicket) -> tuple[Part, ...]:
    """The parts of a ticket; APIResponseValidationError unless it lists exactly parts
    1..N of a sane ``part_size`` covering ``size`` bytes."""
    part_size = ticket.part_size
    count = -(-size // part_size) if part_size > 0 else 0
    numbers = sorted(p.part_number for p in ticket.parts)
    if size == 0 or part_size <= 0 or count > _MAX_PARTS or numbers != list(range(1, count + 1)):
        raise APIResponseValidationError(
            f"malformed multipart ticket: {len(numbers)} part URLs with part_size "
            f"{part_size} do not cover {size} bytes as parts 1..{count}"
        )
    return plan(size, part_size)


class Reader:
    """Positional reads of a path or file-object source, shared by all its parts."""

    def __init__(self, read_at: ReadAt, check: Callable[[], None], close: Callable[[], None]):
        self.read_at, self.check, self.close = read_at, check, close


def _path_reader(source: Source) -> Reader:
    fd = os.open(source.path or "", os.O_RDONLY | getattr(os, "O_BINARY", 0))

    def check() -> None:
        check_unchanged(source, os.fstat(fd))

    return Reader(lambda offset, count: os.pread(fd, count, offset), check, lambda: os.close(fd))


def _file_reader(source: Source) -> Reader:
    """A caller's file object: one seek+read at a time (its position is shared state)."""
    handle: IO[bytes] = source.value
    lock = threading.Lock()

    def read_at(offset: int, count: int) -> bytes:
        with lock:
            handle.seek(source.start + offset)
            return handle.read(count)

    return Reader(read_at, lambda: None, lambda: None)


async def open_reader(source: Source) -> Reader | None:
    """The positional reader of a path or file source (None for bytes and streams)."""
    if source.kind == "path" and not source.in_memory:
        return await asyncio.to_thread(_path_reader, source)
    if source.kind == "file":
        return _file_reader(source)
    return None


def memory_reader(source: Source) -> Reader | None:
    """Positional reads of an in-memory source, for hashing its parts (None otherwise)."""
    if not source.in_memory:
        return None
    view = memoryview(source.value)
    return Reader(lambda offset, count: bytes(view[offset : offset + count]), _nothing, _nothing)


def _nothing() -> None:
    return None


class _Window:
    """A read-only file object over one part: what ``Source`` streams for kind "file".

    At its end it checks the whole file is unchanged (size, mtime and ctime), in the reading
    thread, before the payload sends the part's last bytes."""

    closed = False

    def __init__(self, reader: Reader, part: Part) -> None:
        self._reader, self._part, self._pos = reader, part, 0

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = pos
        return pos

    def read(self, count: int = -1) -> bytes:
        left = self._part.size - self._pos
        if left <= 0:
            self._reader.check()
            return b""
        data = self._reader.read_at(self._part.offset + self._pos, min(count, left))
        self._pos += len(data)
        return data


def part_source(source: Source, part: Part, reader: Reader | None, data: Any = None) -> Source:
    """Part ``part`` of ``source`` as a Source: a window onto the file (``reader``), a slice
    of in-memory bytes, or ``data`` already read from a stream."""
    common: dict[str, Any] = {
        "size": part.size,
        "filename": source.filename,
        "content_type": source.content_type,
        "rewindable": True,
    }
    if reader is not None:
        return Source(kind="file", value=_Window(reader, part), **common)
    if data is None:
        data = memoryview(source.value)[part.offset : part.offset + part.size]
    return Source(kind="bytes", value=data, **common)


def hash_range(reader: Reader, part: Part) -> str | None:
    """The sha256 of ``part`` as the file holds it now; None when the file is shorter."""
    digest = hashlib.sha256()
    for offset in range(part.offset, part.offset + part.size, CHUNK_SIZE):
        count = min(CHUNK_SIZE, part.offset + part.size - offset)
        data = reader.read_at(offset, count)
        if len(data) != count:
            return None
        digest.update(data)
    return digest.hexdigest()


def close_quietly(reader: Reader | None) -> None:
    """Close a reader, ignoring errors (the upload's own error wins)."""
    if reader is not None:
        with contextlib.suppress(OSError):
            reader.close()

"""Every kind of upload source, checked before any request and read as sized chunks.

A source knows its exact size, a file name and content type, whether it can be read again
from the start (so a failed PUT can be retried), and how to stream its bytes. A small file
(up to 1 MiB) is read whole (see ``files.py``); a larger one is read in 1 MiB chunks
(measured: 64 KiB reads cost 3-4x the CPU of 1 MiB ones), read ahead of the socket by a
thread of its own and hashed by another (``readahead.py``), and if it changes size, mtime
or ctime while it streams its upload fails instead of sending a torn copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import mimetypes
import os
from collections.abc import AsyncGenerator, AsyncIterable
from pathlib import Path
from typing import IO, Any, BinaryIO, Final, TypeAlias

import aiofiles.os
import attrs

from .._errors import UploadError
from .._validate import check_upload_filename
from .files import CHUNK_SIZE, SMALL_FILE, LocalFiles, hexdigest, version
from .files import bad_source as _bad
from .readahead import HashBehind, ReadAhead

__all__ = ["CHUNK_SIZE", "HASH_IN_THREAD", "SMALL_FILE", "Source", "SourceLike", "prepare_source"]

# Below this, hashing on the loop costs less than handing the bytes to the file thread.
HASH_IN_THREAD: Final = 256 * 1024
SourceLike: TypeAlias = (
    str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes] | AsyncIterable[bytes]
)
_OCTET: Final = "application/octet-stream"
Hasher: TypeAlias = Any  # a hashlib object; hashlib has no public type for it
Chunks: TypeAlias = AsyncGenerator[bytes | memoryview, None]


def _close_opened(future: asyncio.Future[BinaryIO]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


def _open(path: Path) -> BinaryIO:
    return open(path, "rb")  # closed by the caller, see open_binary


async def open_binary(path: Path) -> BinaryIO:
    """The file, opened in a worker thread so that nothing can leak.

    A file opened in the worker thread after the caller was cancelled is closed instead of
    left to the garbage collector (``aiofiles.open`` would drop it). The caller closes it
    synchronously, so a second cancellation cannot skip that either.
    """
    loop = asyncio.get_running_loop()
    opening = loop.run_in_executor(None, _open, path)
    try:
        handle = await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_opened)
        raise
    return handle


def _read_chunk(handle: IO[bytes], hashing: HashBehind | None) -> bytes:
    """The next chunk, handed to the hashing thread (which hashes it while this one reads
    the next: hashlib releases the GIL)."""
    data = handle.read(CHUNK_SIZE)
    if hashing is not None and data:
        hashing.feed(data)
    return data


async def _read_ahead(
    handle: IO[bytes], hasher: Hasher | None, identity: str
) -> AsyncGenerator[bytes, None]:
    hashing = None if hasher is None else HashBehind(hasher, name="gateway-hash")
    reader = ReadAhead(functools.partial(_read_chunk, handle, hashing), name="gateway-read")
    try:
        while True:
            try:
                data = await reader.next()
            except OSError as exc:  # the disk, not the network: retrying would not help
                raise UploadError(
                    f"{identity}: reading the source failed ({exc.strerror or exc}); "
                    "the upload was not completed"
                ) from exc
            if not data:
                if hashing is not None:
                    await hashing.finish()  # the caller reads the digest next
                return
            yield data
    finally:
        if hashing is not None:
            await hashing.aclose()  # first: a read blocked feeding it returns
        await reader.aclose()  # before the caller closes the file the thread reads


async def _hashed(chunks: Chunks, hasher: Hasher | None) -> Chunks:
    """In-memory or async-iterable chunks, folded into the hash (off the loop when large)."""
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            if hasher is not None and len(chunk) >= HASH_IN_THREAD:
                await asyncio.get_running_loop().run_in_executor(None, hasher.update, chunk)
            elif hasher is not None:
                hasher.update(chunk)
            yield chunk


@attrs.define(slots=True)
class Source:
    """One upload source, normalised. ``chunks()`` streams it from the start each call."""

    kind: str
    size: int
    filename: str
    content_type: str
    rewindable: bool
    value: Any = attrs.field(repr=False)
    path: Path | None = None
    mtime_ns: int | None = None
    ctime_ns: int | None = None  # no program can set it back, unlike mtime (rsync -t, touch)
    start: int = 0
    _streamed: bool = False
    _sha256: str | asyncio.Future[str] | None = None

    @property
    def identity(self) -> str:
        return str(self.path) if self.path is not None else f"<{self.kind} {self.filename}>"

    @property
    def in_memory(self) -> bool:
        """Bytes given by the caller, or a small file already read whole."""
        return self.kind == "bytes" or (self.kind == "path" and self.value is not None)

    @property
    def whole(self) -> bool:
        """Sent as one bytes body, hashed once for all attempts (see ``sha256``)."""
        return self.in_memory and self.size <= SMALL_FILE

    def start_sha256(self, files: LocalFiles) -> None:
        """Start hashing a whole source in the file thread, so it overlaps with the init."""
        if self.whole and self._sha256 is None and self.size >= HASH_IN_THREAD:
            self._sha256 = files.sha256(self.value)

    async def sha256(self) -> str:
        """The sha256 hex of a whole source, computed once for all its attempts."""
        if self._sha256 is None:
            self._sha256 = hexdigest(self.value)
        elif isinstance(self._sha256, asyncio.Future):
            self._sha256 = await self._sha256
        return self._sha256

    async def content_sha256(self) -> str:
        """The sha256 of the whole content before the upload starts (an identity needs it
        before ``init``). A whole source is hashed from the very bytes its PUT sends; a
        larger one costs one extra read, and its PUT hashes what it sends again, so a
        source that changes in between fails instead of sending other bytes under this
        identity. A stream cannot be read twice and has no identity before it is sent."""
        if self.whole:
            return await self.sha256()
        if not self.rewindable:
            raise _bad(
                "an async iterable cannot be hashed before it is sent, and job= names an "
                "upload by its content; pass a path, bytes or a seekable file, or drop job=",
                "job",
            )
        hasher = hashlib.sha256()
        async with contextlib.aclosing(self._chunks(hasher)) as chunks:
            async for _ in chunks:
                pass
        return hasher.hexdigest()

    async def chunks(self, hasher: Hasher | None = None) -> Chunks:
        """The source's bytes in chunks of at most CHUNK_SIZE, from byte 0, each folded
        into ``hasher`` (when given): all of them by the time the iteration ends (a chunk
        may be yielded while a thread still hashes it)."""
        if self._streamed and not self.rewindable:
            raise UploadError(
                f"{self.identity}: an async iterable cannot be re-read, so the upload cannot "
                "be retried; pass a path, bytes or a seekable file to get retries"
            )
        self._streamed = True
        # aclosing: when the sender stops between chunks (an error, a miscount), the inner
        # generator's cleanup (thread, file) runs now, not whenever it is garbage-collected.
        async with contextlib.aclosing(self._chunks(hasher)) as chunks:
            async for chunk in chunks:
                yield chunk

    def _chunks(self, hasher: Hasher | None) -> Chunks:
        if self.kind == "path" and not self.in_memory:
            return self._path_chunks(hasher)
        if self.kind == "file":
            return self._file_chunks(hasher)
        return _hashed(self._memory_chunks() if self.in_memory else self._iter_chunks(), hasher)

    async def _memory_chunks(self) -> AsyncGenerator[memoryview, None]:
        view = memoryview(self.value)
        for offset in range(0, self.size, CHUNK_SIZE):
            yield view[offset : offset + CHUNK_SIZE]

    async def _path_chunks(self, hasher: Hasher | None) -> AsyncGenerator[bytes, None]:
        assert self.path is not None
        handle = await open_binary(self.path)
        try:
            async with contextlib.aclosing(_read_ahead(handle, hasher, self.identity)) as reads:
                async for data in reads:
                    yield data
        finally:
            handle.close()
        await self._check_unchanged()

    async def _check_unchanged(self) -> None:
        assert self.path is not None
        try:
            info = await aiofiles.os.stat(self.path)
        except OSError as exc:  # renamed or deleted: not storage's fault, as aiohttp would say
            raise UploadError(
                f"{self.identity}: the file was moved or removed while it was uploading "
                f"({exc.strerror}); the upload was not completed"
            ) from None
        check_unchanged(self, info)

    async def _file_chunks(self, hasher: Hasher | None) -> AsyncGenerator[bytes, None]:
        handle: IO[bytes] = self.value
        await asyncio.get_running_loop().run_in_executor(None, handle.seek, self.start)
        async with contextlib.aclosing(_read_ahead(handle, hasher, self.identity)) as reads:
            async for data in reads:
                yield data

    async def _iter_chunks(self) -> Chunks:
        """The caller's chunks; empty ones are skipped (Starlette's ``request.stream()``
        ends with ``b""``, which is no data, not data past the declared size)."""
        async for chunk in self.value:
            if isinstance(chunk, bytearray):
                chunk = bytes(chunk)
            if not isinstance(chunk, bytes | memoryview):
                raise _bad(f"the async iterable yielded {type(chunk).__name__}; yield bytes")
            if len(chunk):
                yield chunk


def check_unchanged(source: Source, info: os.stat_result) -> None:
    """UploadError unless ``info`` shows the file as it was when the upload began (its
    ``version``). The ctime also moves with metadata alone (chmod, a new hard link, an
    xattr), which then fails the upload as well: a false alarm costs a rerun, a missed
    change old and new bytes under one sha256.
    """
    if version(info) != (source.size, source.mtime_ns, source.ctime_ns):
        how = "rewritten in place" if info.st_size == source.size else "now"
        raise UploadError(
            f"{source.identity}: the file changed while it was uploading ({source.size} bytes "
            f"then, {how} {info.st_size}); the upload was not completed: upload it again"
        )


def _content_type(filename: str, given: str | None) -> str:
    if given is not None:
        if not isinstance(given, str) or "/" not in given or any(c in given for c in "\r\n"):
            raise _bad(f"{given!r} is not a MIME type such as 'image/png'", "content_type")
        return given
    return mimetypes.guess_type(filename)[0] or _OCTET


def _check_size(size: object, actual: int | None) -> int | None:
    if size is None:
        return actual
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise _bad(f"{size!r} is not a byte count; pass a non-negative int", "size")
    if actual is not None and size != actual:
        raise _bad(f"size={size} but the source holds {actual} bytes; drop size= or fix it", "size")
    return size


async def _from_path(
    source: str | os.PathLike[str],
    filename: str | None,
    content_type: str | None,
    size: object,
    files: LocalFiles,
) -> Source:
    path = source if isinstance(source, Path) else Path(os.fspath(source))
    name = filename
    if name is None:  # a given filename was checked by prepare_source already
        name = path.name
        check_upload_filename(name)
    info, data = await files.inspect(path)
    return Source(
        kind="path",
        size=_check_size(size, info.st_size) or 0,
        filename=name,
        content_type=_content_type(name, content_type),
        rewindable=True,
        value=data,
        path=path,
        mtime_ns=info.st_mtime_ns,
        ctime_ns=info.st_ctime_ns,
    )


def _from_file(handle: Any, filename: str | None, content_type: str | None, size: object) -> Source:
    if getattr(handle, "closed", False):
        raise _bad("the file object is closed; pass an open one")
    if not (callable(getattr(handle, "seekable", None)) and handle.seekable()):
        raise _bad("the file object is not seekable; pass its path, or an async iterable + size=")
    if not isinstance(handle.read(0), bytes):
        raise _bad("the file object is in text mode; open it with 'rb'")
    start = handle.tell()
    end = handle.seek(0, os.SEEK_END)
    handle.seek(start)
    raw_name = getattr(handle, "name", None)
    name = filename or (Path(raw_name).name if isinstance(raw_name, str) else "upload.bin")
    check_upload_filename(name)
    return Source(
        kind="file",
        size=_check_size(size, end - start) or 0,
        filename=name,
        content_type=_content_type(name, content_type),
        rewindable=True,
        value=handle,
        start=start,
    )


async def prepare_source(
    source: SourceLike,
    *,
    filename: str | None = None,
    content_type: str | None = None,
    size: int | None = None,
    files: LocalFiles,
) -> Source:
    """Check ``source`` and the options; raise InvalidRequestError before any request.

    ``files`` checks paths and reads small files whole.
    """
    if filename is not None:
        check_upload_filename(filename)
    if isinstance(source, str | Path | os.PathLike):  # Path first: PathLike's check is slow
        return await _from_path(source, filename, content_type, size, files)
    if isinstance(source, bytes | bytearray | memoryview):
        data = memoryview(source).cast("B") if isinstance(source, memoryview) else source
        name = filename or "upload.bin"
        return Source(
            kind="bytes",
            size=_check_size(size, len(data)) or 0,
            filename=name,
            content_type=_content_type(name, content_type),
            rewindable=True,
            value=data,
        )
    if isinstance(source, AsyncIterable):
        if size is None:
            raise _bad("an async iterable needs size= (the exact byte count)", "size")
        name = filename or "upload.bin"
        return Source(
            kind="stream",
            size=_check_size(size, None) or 0,
            filename=name,
            content_type=_content_type(name, content_type),
            rewindable=False,
            value=source,
        )
    if callable(getattr(source, "read", None)):
        return _from_file(source, filename, content_type, size)
    raise _bad(
        f"{type(source).__name__} is not an upload source; pass a path, bytes, a binary file "
        "object, or an async iterable of bytes with size="
    )

"""Sources of an ingest: reading them one at a time, and telling who each one is.

A source is anything ``gw.media.upload`` accepts (a path, bytes, a file object, an async
iterable of bytes) or an already uploaded ``MediaRef``. The journal can only recognise
sources it can name again in a later process: paths (by absolute path, size and mtime,
then content hash) and bytes (by content hash). Other sources are uploaded every time.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

import attrs

from .._batch import check_many
from .._errors import InvalidRequestError

__all__ = ["Identity", "SourceReader", "file_sha256", "identify"]

_CHUNK = 1 << 20
_INLINE_HASH_LIMIT = 1 << 16  # hash small byte strings on the loop; bigger ones in a thread


@attrs.frozen(kw_only=True)
class Identity:
    """How the journal names a source; ``key`` None means it cannot be journaled."""

    key: str | None = None
    path: str | None = None
    size: int | None = None
    mtime_ns: int | None = None
    sha256: str | None = None


def identify(source: Any) -> Identity:
    """The identity of a source; stats paths (raises OSError for a missing file)."""
    if isinstance(source, str | os.PathLike):
        path = os.path.abspath(os.fspath(source))
        stat = os.stat(path)
        return Identity(key=f"path:{path}", path=path, size=stat.st_size, mtime_ns=stat.st_mtime_ns)
    if isinstance(source, bytes | bytearray | memoryview):
        return Identity(size=len(source))  # hashed later, off the loop if large
    return Identity()


async def content_sha256(source: Any, identity: Identity) -> Identity:
    """``identity`` completed with the sha256 of the content (read in a worker thread)."""
    if identity.path is not None:
        digest = await asyncio.to_thread(file_sha256, identity.path)
    elif len(source) <= _INLINE_HASH_LIMIT:
        digest = hashlib.sha256(source).hexdigest()
    else:
        digest = await asyncio.to_thread(lambda: hashlib.sha256(source).hexdigest())
    key = identity.key or f"sha256:{digest}"
    return attrs.evolve(identity, key=key, sha256=digest)


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def journaled(source: Any) -> bool:
    return isinstance(source, str | os.PathLike | bytes | bytearray | memoryview)


class SourceReader:
    """Pulls one source at a time from a sync or async iterable.

    A sync iterator is advanced on the event loop, so it should not block (a generator over
    a local directory listing is fine; a slow network listing belongs in an async iterator).
    """

    def __init__(self, sources: Iterable[Any] | AsyncIterable[Any]) -> None:
        self._async: AsyncIterator[Any] | None = None
        self._sync: Iterator[Any] | None = None
        check_many(sources, "sources", "gw.media.upload() and gw.runs.create() for one")
        if isinstance(sources, AsyncIterable):
            self._async = aiter(sources)
        elif isinstance(sources, Iterable) and not isinstance(sources, str | bytes):
            self._sync = iter(sources)
        else:
            raise InvalidRequestError(
                f"sources: expected an iterable (or async iterable) of sources, got "
                f"{type(sources).__name__}; pass e.g. a list of paths",
                field="sources",
            )

    async def next(self) -> tuple[bool, Any]:
        """(True, source), or (False, None) once the sources are exhausted."""
        if self._async is not None:
            try:
                return True, await anext(self._async)
            except StopAsyncIteration:
                return False, None
        assert self._sync is not None
        try:
            return True, next(self._sync)
        except StopIteration:
            return False, None

    async def aclose(self) -> None:
        """Close an async generator source, so its ``finally`` blocks run now."""
        closer = getattr(self._async, "aclose", None)
        if closer is not None:
            await closer()

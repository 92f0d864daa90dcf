"""The bounded, ordered batch runner behind ``runs.create_many`` and ``media.upload_many``.

A fixed pool of workers pulls from one shared iterator, so a generator of a million items
is consumed only as fast as slots free up. Results keep input order; one item's failure
never cancels the rest; an error that dooms every later item (a bad key, an empty wallet)
stops new work and the items left are reported as ``NotAttemptedError``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from ._errors import GatewayError, InvalidRequestError, NotAttemptedError

__all__ = ["check_concurrency", "check_many", "run_batch"]

T = TypeVar("T")
R = TypeVar("R")


def check_concurrency(concurrency: object) -> int:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidRequestError("concurrency: must be a positive integer", field="concurrency")
    return concurrency


def check_many(items: object, field: str, one: str, what: str = "sources") -> None:
    """Refuse one source where many are expected: a ``str``, ``bytes`` or ``Path`` is
    iterable (or looks like a one-item batch) and would be sent character by character,
    byte by byte, or not at all. ``one`` names the call that takes a single item."""
    single = (str, bytes, bytearray, memoryview, os.PathLike)
    if isinstance(items, single):
        raise InvalidRequestError(
            f"{field}: expected an iterable of {what}, got one {type(items).__name__} "
            f"({items!r:.60}); pass a list, e.g. {field}=[{items!r:.40}], or use {one}",
            field=field,
        )


def _not_attempted(doom: GatewayError) -> NotAttemptedError:
    return NotAttemptedError(
        f"not sent: an earlier item failed with {type(doom).__name__} ({doom}), "
        "which every later item would meet too",
        reason=doom,
    )


def _as_result(index: int, exc: Exception) -> GatewayError:
    """Any per-item failure as that item's result: a foreign one is wrapped, never raised."""
    if isinstance(exc, GatewayError):
        return exc
    error = GatewayError(f"item {index} failed: {type(exc).__name__}: {str(exc)[:200]}")
    error.__cause__ = exc
    return error


def _source_failed(index: int, exc: Exception) -> GatewayError:
    """The iterable raised at ``index``: a GatewayError (a RunRequest refused as it was
    built) is kept, so its field path shows; anything else is wrapped."""
    if isinstance(exc, GatewayError):
        return exc
    error = InvalidRequestError(
        f"requests: the iterable raised {type(exc).__name__} ({str(exc)[:200]}) at item "
        f"{index}; the items before it were sent, none after it",
        field="requests",
    )
    error.__cause__ = exc
    return error


async def run_batch(
    items: Iterable[T],
    call: Callable[[int, T], Awaitable[R]],
    *,
    concurrency: int,
    dooming: tuple[type[GatewayError], ...],
) -> list[R | GatewayError]:
    """Await ``call(index, item)`` for every item, at most ``concurrency`` at once.

    No exception of an item (nor of ``items`` itself) escapes: each becomes a result, so
    the runs already executed, and paid for, always reach the caller.
    """
    check_concurrency(concurrency)
    results: dict[int, R | GatewayError] = {}
    doom: list[GatewayError] = []
    try:
        source = iter(items)
    except TypeError:
        raise InvalidRequestError(
            f"requests: {type(items).__name__} is not iterable; pass a list or a generator",
            field="requests",
        ) from None
    counter = itertools.count()
    ended: list[bool] = []

    def take() -> tuple[int, T] | None:
        if ended:
            return None
        index = next(counter)
        try:
            return index, next(source)
        except StopIteration:
            ended.append(True)
        except Exception as exc:
            ended.append(True)
            results[index] = _source_failed(index, exc)
        return None

    async def worker() -> None:
        while (taken := take()) is not None:
            index, item = taken
            if doom:
                results[index] = _not_attempted(doom[0])
                continue
            try:
                results[index] = await call(index, item)
            except dooming as exc:
                doom.append(exc)
                results[index] = exc
            except Exception as exc:
                results[index] = _as_result(index, exc)

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return [results[index] for index in range(len(results))]

"""The bounded, ordered batch runner behind ``runs.create_many`` and ``media.upload_many``.

A fixed pool of workers pulls from one shared iterator, so a generator of a million items
is consumed only as fast as slots free up. Results keep input order; one item's failure
never cancels the rest; an error that dooms every later item (a bad key, an empty wallet)
stops new work and the items left are reported as ``NotAttemptedError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from ._errors import GatewayError, InvalidRequestError, NotAttemptedError

__all__ = ["check_concurrency", "run_batch"]

T = TypeVar("T")
R = TypeVar("R")


def check_concurrency(concurrency: object) -> int:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidRequestError("concurrency: must be a positive integer", field="concurrency")
    return concurrency


def _not_attempted(doom: GatewayError) -> NotAttemptedError:
    return NotAttemptedError(
        f"not sent: an earlier item failed with {type(doom).__name__} ({doom}), "
        "which every later item would meet too",
        reason=doom,
    )


async def run_batch(
    items: Iterable[T],
    call: Callable[[int, T], Awaitable[R]],
    *,
    concurrency: int,
    dooming: tuple[type[GatewayError], ...],
) -> list[R | GatewayError]:
    """Await ``call(index, item)`` for every item, at most ``concurrency`` at once."""
    check_concurrency(concurrency)
    results: dict[int, R | GatewayError] = {}
    doom: list[GatewayError] = []
    source = enumerate(items)

    async def worker() -> None:
        for index, item in source:
            if doom:
                results[index] = _not_attempted(doom[0])
                continue
            try:
                results[index] = await call(index, item)
            except dooming as exc:
                doom.append(exc)
                results[index] = exc
            except GatewayError as exc:
                results[index] = exc

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return [results[index] for index in range(len(results))]

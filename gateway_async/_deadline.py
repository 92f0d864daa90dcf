"""Attempt timeouts without one loop timer per request.

aiohttp's per-request ``total`` timeout (like ``asyncio.timeout``) schedules and cancels a
loop timer for every request; at thousands of runs per second that is a measurable share
of the client's CPU (about 8 µs of ~120 µs per run here). ``DeadlineWatch`` keeps one timer
for all in-flight attempts of a client, set to the earliest deadline, and cancels the task
whose attempt overran it; the transport turns that cancellation into ``APITimeoutError``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

__all__ = ["DeadlineWatch", "InFlight"]

_SLACK: Final = 0.001  # timers may fire a hair early; never expire an attempt before its time


class DeadlineWatch:
    """Cancels tasks whose registered deadline (loop time) has passed."""

    __slots__ = ("_due", "_expired", "_handle", "_loop", "_next_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._due: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._next_at = float("inf")

    def watch(self, task: asyncio.Task[object], deadline: float) -> None:
        """Cancel ``task`` at ``deadline`` unless ``release(task)`` comes first."""
        self._due[task] = deadline
        if deadline < self._next_at:
            self._arm(deadline)

    def release(self, task: asyncio.Task[object]) -> None:
        self._due.pop(task, None)

    def expired(self, task: asyncio.Task[object]) -> bool:
        """Whether the watch (and nobody else) cancelled ``task``; call it on CancelledError.

        True once per expiry, and only when no other cancellation is pending: the task's
        cancel request is withdrawn, so the caller can raise its own timeout error instead.
        """
        if task in self._expired:
            self._expired.discard(task)
            return task.uncancel() == 0
        return False

    def overdue(self, task: asyncio.Task[object]) -> bool:
        """Whether the watch cancelled ``task``, without consuming it as ``expired`` does."""
        return task in self._expired

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._due.clear()

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._next_at = when
        self._handle = self._loop.call_at(when + _SLACK, self._sweep)

    def _sweep(self) -> None:
        self._handle, self._next_at = None, float("inf")
        now = self._loop.time()
        for task, deadline in list(self._due.items()):
            if deadline <= now:
                del self._due[task]
                self._expired.add(task)
                task.cancel()
        if self._due:
            self._arm(min(self._due.values()))


class InFlight:
    """The tasks with a call in flight, so that closing a client can wait for them.

    ``drain`` waits (bounded) until no other task has a call in flight, then cancels those
    left, marked as cut off: their call turns that cancellation into a typed "the client was
    closed" error (``cut_off``), so it is never mistaken for a malformed answer.
    """

    __slots__ = ("_calls", "_cut", "_left")

    def __init__(self) -> None:
        self._calls: dict[asyncio.Task[object], int] = {}  # a task may nest calls (a hook)
        self._cut: set[asyncio.Task[object]] = set()
        self._left: asyncio.Event | None = None  # set whenever a call ends, while draining

    def enter(self, task: asyncio.Task[object]) -> None:
        self._calls[task] = self._calls.get(task, 0) + 1

    def leave(self, task: asyncio.Task[object]) -> None:
        left = self._calls[task] - 1
        if left:
            self._calls[task] = left
        else:
            del self._calls[task]
        if self._left is not None:
            self._left.set()

    def cut_off(self, task: asyncio.Task[object]) -> bool:
        """Whether ``drain`` (and nobody else) cancelled ``task``; call it on CancelledError."""
        if task not in self._cut:
            return False
        self._cut.discard(task)
        return task.uncancel() == 0

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for the calls of other tasks, then cut off the rest and
        wait (as long again at most) for them to end."""
        if not self._others():
            return
        try:
            await self._until_idle(timeout)
        except TimeoutError:
            for task in self._others():
                self._cut.add(task)
                task.cancel()
            # A call that ignores its cancellation: the session then closes under it.
            with contextlib.suppress(TimeoutError):
                await self._until_idle(timeout)
        finally:
            self._left = None

    def _others(self) -> list[asyncio.Task[object]]:
        me = asyncio.current_task()
        return [task for task in self._calls if task is not me]

    async def _until_idle(self, timeout: float) -> None:
        left = self._left = asyncio.Event()
        async with asyncio.timeout(timeout):
            while self._others():
                left.clear()
                await left.wait()

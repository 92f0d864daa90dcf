"""An event loop that explores task interleavings: seeded order, virtual time.

``InterleavingLoop(seed)`` is asyncio's selector loop with two changes:

* **Order.** Each time the loop takes the next ready callback, it may take a later one
  instead, as long as every callback it passes over is a task's step: those tasks simply
  run later, as they would if their wake-up had come a little later. Other callbacks
  (protocol callbacks, future callbacks, ``call_soon`` of the code under test) keep
  asyncio's first-in first-out order, which code may rely on. Which one is taken is drawn
  from ``random.Random(seed)``, so races that need two tasks to act in the same loop turn
  (``aclose()`` before the runner's first step) come up by seed instead of by luck.
* **Time.** ``time()`` is virtual: when nothing is ready, no socket has data and no thread
  is working for the loop, the clock jumps to the next timer. Timeouts, backoffs and the
  emulator's latency cost no wall time, and a hang is seen at once: nothing ready, no
  timer, no I/O, no thread (``Stuck``), or a virtual guard timer firing.

Loopback sockets are real, so a seed replays the same interleaving as long as the kernel
hands over data as promptly as it usually does on loopback.
"""

from __future__ import annotations

import asyncio
import collections
import random
import selectors
from collections.abc import Callable
from typing import Any

__all__ = ["InterleavingLoop", "Stuck"]

REAL_IDLE = 10.0  # wall seconds without anything that could wake the loop: it is stuck
WINDOW = 8  # how far ahead of the head a ready task step may be taken


class Stuck(RuntimeError):
    """Nothing ready, no timer, no I/O, no thread at work: whoever waits, waits forever."""


def _is_step(handle: asyncio.Handle) -> bool:
    """Whether ``handle`` runs a task's step (its start, or its wake-up by a future)."""
    return isinstance(getattr(handle._callback, "__self__", None), asyncio.Task)  # type: ignore[attr-defined]


class _Ready(collections.deque[asyncio.Handle]):
    """The loop's ready queue, taking task steps out of order (see the module docstring)."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self._rng = rng

    def popleft(self) -> asyncio.Handle:
        limit = min(len(self), WINDOW)
        last = 0
        while last < limit - 1 and _is_step(self[last]):
            last += 1  # every handle before ``last`` is a task step: each may be passed over
        pick = self._rng.randint(0, last) if last else 0
        if not pick:
            return super().popleft()
        handle = self[pick]
        del self[pick]
        return handle


class _VirtualSelector:
    """The loop's selector, moving virtual time forward instead of sleeping."""

    def __init__(self, real: selectors.BaseSelector, loop: InterleavingLoop) -> None:
        self._real = real
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)  # register, modify, unregister, get_key, close...

    def select(self, timeout: float | None = None) -> list[Any]:
        events = self._real.select(0)
        if events or timeout == 0:
            return events
        if self._loop.threads or timeout is None:
            # Only a thread (or nothing at all) can wake the loop now: wait for it for real.
            events = self._real.select(REAL_IDLE)
            if not events and not self._loop.threads:
                raise Stuck("nothing ready, no timer, no I/O and no thread: a hang")
            return events
        self._loop.now += timeout
        return []


class InterleavingLoop(asyncio.SelectorEventLoop):
    """See the module docstring."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.now = 0.0
        self.threads = 0  # run_in_executor calls in flight: they wake the loop, not a timer
        self._ready: collections.deque[asyncio.Handle] = _Ready(random.Random(seed))
        self._selector = _VirtualSelector(self._selector, self)  # type: ignore[has-type]

    def time(self) -> float:
        return self.now

    def run_in_executor(self, executor: Any, func: Callable[..., Any], *args: Any) -> Any:
        future = super().run_in_executor(executor, func, *args)
        self.threads += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _: object) -> None:
        self.threads -= 1

"""Per-credential token buckets for ``429 rate_limited`` (off unless configured).

The buckets read the emulator's injectable clock, so a test can refill them by moving
the clock instead of sleeping.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    """``rate`` tokens per second, at most ``burst`` saved up; ``retry_after`` overrides the
    computed ``Retry-After`` seconds."""

    rate: float
    burst: int
    retry_after: int | None = None

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("RateLimit needs rate > 0 and burst >= 1")


class TokenBuckets:
    """One bucket per credential."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float]) -> None:
        self._limit = limit
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # who -> (tokens, last refill)

    def take(self, who: str) -> int | None:
        """Spend one token; when none is left, the ``Retry-After`` seconds (at least 1)."""
        now = self._clock()
        tokens, last = self._buckets.get(who, (float(self._limit.burst), now))
        tokens = min(float(self._limit.burst), tokens + max(0.0, now - last) * self._limit.rate)
        if tokens >= 1.0:
            self._buckets[who] = (tokens - 1.0, now)
            return None
        self._buckets[who] = (tokens, now)
        if self._limit.retry_after is not None:
            return self._limit.retry_after
        return max(1, math.ceil((1.0 - tokens) / self._limit.rate))

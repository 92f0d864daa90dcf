"""The retry policy as a small, testable object: which failures to retry, and how long to wait.

Exponential backoff with full jitter (the AWS architecture blog's recommendation: it spreads
a thundering herd best), bounded by a cap, and overridden by a server's ``Retry-After``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import attrs

from ._errors import ConfigurationError

__all__ = ["RETRYABLE_STATUSES", "RetryPolicy", "parse_retry_after"]

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def _non_negative(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    # NaN passes a ``value < 0`` check and then every comparison with it is False.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigurationError(
            f"{attribute.name} must be a finite non-negative number, got {value!r:.40}"
        )


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """When and how long to wait before the next attempt.

    ``max_retries`` counts retries after the first attempt. ``max_retry_after`` is the longest
    ``Retry-After`` the client will sleep through; a longer one surfaces as ``RateLimitError``.
    """

    max_retries: int = attrs.field(default=2, validator=_non_negative)
    base_delay: float = attrs.field(default=0.5, validator=_non_negative)
    max_delay: float = attrs.field(default=8.0, validator=_non_negative)
    max_retry_after: float = attrs.field(default=60.0, validator=_non_negative)
    statuses: frozenset[int] = RETRYABLE_STATUSES
    rng: Callable[[], float] = attrs.field(default=random.random, repr=False, eq=False)

    def retryable_status(self, status: int) -> bool:
        return status in self.statuses

    def backoff(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**retry)] for the ``retry``-th retry."""
        return self.rng() * min(self.max_delay, self.base_delay * (1 << retry))

    def delay(self, retry: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number ``retry`` (0-based); None: do not retry."""
        if retry >= self.max_retries:
            return None
        if retry_after is None:
            return self.backoff(retry)
        if retry_after > self.max_retry_after:
            return None
        return retry_after


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: an integer, or an HTTP date. Garbage counts as absent."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # '²'.isdigit() is True, float('²') fails
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())

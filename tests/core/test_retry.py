"""The retry policy on its own: backoff bounds, Retry-After parsing, when to give up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_async import RetryPolicy
from gateway_async._retry import RETRYABLE_STATUSES, parse_retry_after


@given(retry=st.integers(0, 40), jitter=st.floats(0, 1))
def test_backoff_stays_within_full_jitter_bounds(retry: int, jitter: float) -> None:
    """0 <= delay <= min(cap, base * 2**retry), for every retry and jitter draw."""
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0, rng=lambda: jitter)
    delay = policy.backoff(retry)
    assert 0 <= delay <= min(8.0, 0.5 * 2**retry)


def test_defaults_match_the_documented_policy() -> None:
    """Two retries, 0.5 s base, 8 s cap, Retry-After honoured up to 60 s."""
    policy = RetryPolicy()
    assert (policy.max_retries, policy.base_delay, policy.max_delay) == (2, 0.5, 8.0)
    assert policy.max_retry_after == 60.0
    assert frozenset({408, 429, 500, 502, 503, 504}) == RETRYABLE_STATUSES


def test_delay_gives_up_after_max_retries() -> None:
    """delay() returns None once the retries are spent."""
    policy = RetryPolicy(max_retries=2, rng=lambda: 1.0)
    assert policy.delay(0, None) == 0.5
    assert policy.delay(1, None) == 1.0
    assert policy.delay(2, None) is None


def test_retry_after_overrides_backoff_up_to_the_cap() -> None:
    """A server's Retry-After is the wait; beyond max_retry_after the policy gives up."""
    policy = RetryPolicy(max_retry_after=60)
    assert policy.delay(0, 12.0) == 12.0
    assert policy.delay(0, 61.0) is None


def test_parse_retry_after_seconds_and_garbage() -> None:
    """Integer seconds parse; empty or garbage values count as absent."""
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None


def test_parse_retry_after_http_date() -> None:
    """An HTTP date becomes the seconds until then; a past date means now."""
    now = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now) == 30.0
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(earlier, now=now) == 0.0


@pytest.mark.parametrize(
    "value",
    [
        "\u00b2",
        "\u0663",
        "\uff11\uff12",
        "Mon, 99 Jan 9999 99:99:99 GMT",
        "1 Jan 99999999999999999999 00:00:00",
    ],
)
def test_retry_after_garbage_counts_as_absent(value: str) -> None:
    """Non-ASCII digits ('²'.isdigit() is True) and impossible dates are garbage, not errors."""
    assert parse_retry_after(value) is None

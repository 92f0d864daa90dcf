"""Wire-format helpers shared by every emulator module: ids, RFC 3339 times, credits, JSON.

Kept apart from the SDK on purpose: the emulator speaks the contract's raw JSON with its
own code, so a mistake in the SDK's converter cannot hide on both sides of the wire.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

CREDITS_QUANTUM = Decimal("0.0001")


def new_id(prefix: str) -> str:
    """A fresh opaque id such as ``run_3f2a...`` (96 random bits)."""
    return f"{prefix}_{secrets.token_hex(12)}"


def rfc3339(timestamp: float) -> str:
    """Format a Unix timestamp as RFC 3339 UTC with whole seconds: ``2026-11-24T12:00:00Z``."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float | None:
    """Parse an RFC 3339 time with an explicit offset to a Unix timestamp; None if invalid."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None or "T" not in text.upper():
        return None
    return parsed.timestamp()


def credits(amount: Decimal) -> str:
    """Credits as the contract's decimal string with four places: ``"0.0010"``."""
    return str(amount.quantize(CREDITS_QUANTUM))


def dumps(value: Any) -> str:
    """Compact JSON, as the emulator sends it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def canonical(value: Any) -> str:
    """Key-sorted compact JSON: equal documents give equal text (for idempotency hashes)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)

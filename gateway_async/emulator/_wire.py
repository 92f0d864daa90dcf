"""Wire-format helpers shared by every emulator module: ids, RFC 3339 times, credits, JSON.

Kept apart from the SDK on purpose: the emulator speaks the contract's raw JSON with its
own code, so a mistake in the SDK's converter cannot hide on both sides of the wire.

Request JSON is read strictly (:func:`loads`): ``NaN``/``Infinity`` are not JSON, nesting
is bounded (Python's parser and encoder recurse, so a deep document would otherwise fail
with a ``RecursionError`` after work was done), and a lone UTF-16 surrogate, which no
UTF-8 response can carry, is refused naming its field. Whatever is accepted can therefore
always be echoed back, stored and encoded again.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

CREDITS_QUANTUM = Decimal("0.0001")
MAX_DEPTH = 64
_MAX_DOUBLE = sys.float_info.max
_SURROGATE = re.compile("[\ud800-\udfff]")
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EARLIEST = datetime.min.replace(tzinfo=UTC).timestamp()
LATEST = datetime.max.replace(tzinfo=UTC, microsecond=0).timestamp()


class JsonRefused(ValueError):
    """A request body that is JSON text but not one the emulator accepts.

    ``field`` is the dotted path of the offending value when there is one (a lone
    surrogate), else None (not JSON, a non-finite number, too deep).
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def new_id(prefix: str) -> str:
    """A fresh opaque id such as ``run_3f2a...`` (96 random bits)."""
    return f"{prefix}_{secrets.token_hex(12)}"


def rfc3339(timestamp: float) -> str:
    """Format a Unix timestamp as RFC 3339 UTC with whole seconds: ``2026-11-24T12:00:00Z``.

    The year always has four digits (``strftime("%Y")`` drops leading zeros on glibc), and
    instants outside years 1..9999 are clamped to them.
    """
    moment = _EPOCH + timedelta(seconds=int(min(max(timestamp, EARLIEST), LATEST) // 1))
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}Z"


def parse_rfc3339(text: str) -> float | None:
    """Parse an RFC 3339 ``date-time`` to a Unix timestamp; None if it is not one.

    A valid time whose UTC instant falls outside years 1..9999 (``0001-01-01T00:00:00+01:00``)
    is clamped to the nearest representable instant instead of overflowing; a leap second
    (``23:59:60``) counts as ``23:59:59``.
    """
    if not _RFC3339.fullmatch(text):
        return None
    text = text.upper().replace("Z", "+00:00")
    if text[17:19] == "60":
        text = f"{text[:17]}59{text[19:]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    offset = parsed.utcoffset() or timedelta()
    naive = parsed.replace(tzinfo=None)
    seconds = (naive - datetime(1970, 1, 1)).total_seconds() - offset.total_seconds()
    return min(max(seconds, EARLIEST), LATEST)


def credits(amount: Decimal) -> str:
    """Credits as the contract's decimal string with four places: ``"0.0010"``."""
    return str(amount.quantize(CREDITS_QUANTUM))


def exact_credits(value: Decimal, what: str) -> Decimal:
    """``value`` when it is a finite, non-negative amount of credits with at most four
    decimal places; ValueError naming ``what`` otherwise. Every price, balance and charge
    passes here, so a reply's ``usage.credits``, the wallet and the usage summary add up the
    same numbers (a price of 0.00005 was answered ``"0.0000"`` while the wallet dropped it).
    No wallet or price is negative: ``--balance -5`` used to start."""
    try:
        exact = value.is_finite() and value.quantize(CREDITS_QUANTUM) == value
    except InvalidOperation:  # more digits than a Decimal holds (1e400)
        exact = False
    if not exact:
        raise ValueError(
            f"{what} must be a finite number of credits with at most 4 decimal places "
            f"(e.g. 12.5000), got {value}"
        )
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")
    return value


def parse_credits(text: str, what: str) -> Decimal:
    """:func:`exact_credits` of a decimal string (ValueError naming ``what`` if it is not)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{what} must be a decimal number of credits, got {text!r}") from None
    return exact_credits(value, what)


def printable(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udXXX`` escapes, so it can be encoded."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def dumps(value: Any) -> str:
    """Compact JSON, as the emulator sends it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical(value: Any) -> str:
    """Key-sorted compact JSON: equal documents give equal text (for idempotency hashes)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _no_constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not a JSON number; send a finite number or null")


def loads(raw: bytes) -> Any:
    """Parse a request body strictly (see the module docstring); :class:`JsonRefused` if not."""
    try:  # UTF-8 only: json.loads(bytes) would also read UTF-16 and UTF-32
        value = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise JsonRefused(f"the JSON is nested more than {MAX_DEPTH} levels deep") from None
    except JsonRefused:
        raise
    except ValueError:  # UnicodeDecodeError included
        raise JsonRefused("the request body is not valid JSON in UTF-8") from None
    check_value(value)
    return value


def check_value(value: Any) -> None:
    """Refuse a decoded value that is too deep, holds a number that overflows a double or
    a lone surrogate (JsonRefused)."""
    for path, depth, item in _walk(value):
        if depth > MAX_DEPTH:
            raise JsonRefused(f"the JSON is nested more than {MAX_DEPTH} levels deep")
        if _overflows(item):
            raise JsonRefused(f"{printable(path) or 'a number'} is too large for a JSON number")
        if isinstance(item, str) and _SURROGATE.search(item):
            where = path or "the body"
            raise JsonRefused(
                f"{printable(where)} holds a lone UTF-16 surrogate, which is not Unicode text; "
                "send valid UTF-8",
                field=printable(path) if path else None,
            )


def _overflows(item: Any) -> bool:
    """A number no double holds: 1e400 parses as inf, and an integer literal of 309 digits
    as an int, which no JSON peer could read back as a number."""
    if isinstance(item, float):
        return not math.isfinite(item)
    return isinstance(item, int) and not isinstance(item, bool) and abs(item) > _MAX_DOUBLE


def _walk(value: Any) -> Iterator[tuple[str, int, Any]]:
    """Every (dotted path, depth, value) of a JSON document, keys included, without recursion."""
    stack: list[tuple[str, int, Any]] = [("", 0, value)]
    while stack:
        path, depth, item = stack.pop()
        yield path, depth, item
        if isinstance(item, dict):
            for key, child in item.items():
                inner = f"{path}.{key}" if path else key
                yield inner, depth + 1, key
                stack.append((inner, depth + 1, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", depth + 1, child) for i, child in enumerate(item))

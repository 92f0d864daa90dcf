"""How each JSON leaf of an answer becomes a field's value: the strict rules that the
converter registers and the usual-answer builder (``_fast``) calls, so both build a field
the same way from one definition.

Each rule takes ``(value, type)``, as cattrs calls it, and raises TypeError or ValueError in
words that name what was expected ("expected a decimal string such as '12.50', got '-0'").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

__all__ = ["LEAF_HOOKS", "MAX_MONEY", "MAX_MONEY_PLACES", "PLAIN_MONEY"]

# What the Gateway sends as money: plain digits below 1e15, at most 18 places. Such a
# string needs none of the range checks below (measured: 2x cheaper per field).
PLAIN_MONEY: Final = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,18})?")
MAX_MONEY: Final = Decimal(10) ** 15  # no wallet holds a quadrillion credits
MAX_MONEY_PLACES: Final = 18  # PLAIN_MONEY's bounds: such a string needs no checks below
_DECIMAL: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")  # any plain spelling, bounds checked after


def _strict(kind: type[Any], name: str) -> Any:
    def hook(value: Any, _: Any) -> Any:
        if type(value) is not kind:
            raise TypeError(f"expected {name}, got {type(value).__name__} {value!r:.40}")
        return value

    return hook


def _structure_float(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__} {value!r:.40}")
    return float(value)


def _structure_decimal(value: Any, _: Any) -> Decimal:
    """Money arrives as a decimal string ("12.50"); an int is exact too; a float never is.

    Only plain ASCII digits with at most one point are a decimal string here: Python's
    Decimal also reads " 12.5", "1_000", "+5", "1E+3", "-0" and other scripts' digits,
    none of which a Gateway writes; taking them would hide a broken answer."""
    if type(value) is str and PLAIN_MONEY.fullmatch(value):
        return Decimal(value)
    if type(value) is int or (type(value) is str and _DECIMAL.fullmatch(value)):
        result = Decimal(value)
    elif type(value) is str:
        raise ValueError(f"expected a decimal string such as '12.50', got {value!r:.40}")
    else:
        raise TypeError(f"expected a decimal string, got {type(value).__name__} {value!r:.40}")
    # Every Decimal of the API is money or credits: a negative amount, or one so large or
    # so fine that arithmetic on it raises decimal.Overflow, is a broken answer, not money.
    places = -int(result.as_tuple().exponent)  # an int: the value is finite
    if result < 0 or result >= MAX_MONEY or places > MAX_MONEY_PLACES:
        raise ValueError(
            f"expected an amount of credits from 0 to 1e15 with at most {MAX_MONEY_PLACES} "
            f"decimal places, got {value!r:.40}"
        )
    return result


def _structure_datetime(value: Any, _: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"expected an RFC 3339 string, got {type(value).__name__}")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"expected a time with a UTC offset, got {value!r:.40}")
    return parsed


LEAF_HOOKS: Final[dict[type[Any], Callable[[Any, Any], Any]]] = {
    str: _strict(str, "a string"),
    int: _strict(int, "an integer"),
    bool: _strict(bool, "a boolean"),
    float: _structure_float,
    Decimal: _structure_decimal,
    datetime: _structure_datetime,
}

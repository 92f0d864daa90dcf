"""The request rules of the Gateway contract, as pure functions.

Each rule raises ``InvalidRequestError`` naming the field and the fix, so that a request the
Gateway would refuse with 422 never leaves the process.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final

from ._errors import InvalidRequestError

__all__ = [
    "ROUTING_FIELDS",
    "check_idempotency_key",
    "check_json_value",
    "check_mode_scope",
    "check_scope",
    "check_top_level_fields",
    "check_upload_filename",
    "validate_run_request",
]

SCOPE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ROUTING_FIELDS = frozenset({"resources", "alias", "collection", "namespace"})
VECTOR_MODES = frozenset({"index", "search"})
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_RUN_FIELDS = frozenset({"model", "mode", "scope", "input", "params", "options"})
_ROUTING_FIX = "routing fields are managed by the platform; remove it"
# Deeper than this is refused: json's encoder recurses (RecursionError near 1,000 levels),
# and a circular reference would otherwise only show as that same error mid-batch.
MAX_JSON_DEPTH: Final = 256
_SURROGATE = re.compile("[\ud800-\udfff]")
_SCALARS: Final = (str, int, float, Decimal, datetime)


def _fail(field: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"{field}: {message}", field=field)


def check_scope(scope: object, *, field: str = "scope") -> None:
    """A scope starts with a letter or digit; then letters, digits, ``._-``; 64 chars at most."""
    if not isinstance(scope, str) or SCOPE_PATTERN.fullmatch(scope) is None:
        raise _fail(
            field,
            f"{scope!r} is not a valid scope: start with a letter or digit, then use only "
            "letters, digits, '.', '_' or '-', at most 64 characters",
        )


def check_mode_scope(mode: object, scope: object) -> None:
    """A mode is a non-empty string; a scope, if given, is valid, and a vector mode needs one.

    Shared by a run request and by the ingest's options, which check it before uploading.
    """
    if not isinstance(mode, str) or not mode:
        raise _fail("mode", "must be a non-empty string such as 'execute', 'index' or 'search'")
    if scope is not None:
        check_scope(scope)
    elif mode in VECTOR_MODES:
        raise _fail("scope", f"required for mode {mode!r}: pass scope='my-dataset'")


def check_idempotency_key(key: object) -> None:
    """1 to 255 printable ASCII characters, as the contract allows."""
    if not isinstance(key, str) or not 1 <= len(key) <= 255 or not _printable_ascii(key):
        raise _fail("idempotency_key", "use 1 to 255 printable ASCII characters")


def _printable_ascii(text: str) -> bool:
    return text.isascii() and all(32 < ord(ch) < 127 for ch in text)


def _check_object(field: str, value: object) -> None:
    if value is not None and not isinstance(value, Mapping):
        raise _fail(field, f"must be a JSON object (a dict), not {type(value).__name__}")


def _check_options(options: Mapping[str, Any] | None) -> None:
    if not options:
        return
    if "hardware_tier" in options:
        raise _fail(
            "options.hardware_tier",
            "not allowed: hardware is resolved from the published model release; remove it",
        )
    for name in ROUTING_FIELDS.intersection(options):
        raise _fail(f"options.{name}", _ROUTING_FIX)


def check_json_value(value: object, field: str) -> None:
    """Refuse what the request encoder cannot send, naming the exact path inside ``field``.

    Checked when a request is built, so ``create_many`` never meets a ``TypeError`` halfway
    through a batch. The walk is iterative: a deep or circular value cannot exhaust the stack.
    It is on every run's path, so plain values take the shortest branches and a field's
    path is only spelled out for an error (a few µs for a small input).
    """
    if type(value) is not dict or not _flat(value):
        _walk(value, field)


def _walk(value: object, field: str) -> None:
    stack: list[tuple[object, int, _Path]] = [(value, 0, (None, field))]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                raise _fail(_spell(where), "the string holds a lone surrogate (not UTF-8)")
        elif type(item) is int or item is None or item is True or item is False:
            continue
        elif depth >= MAX_JSON_DEPTH:
            raise _fail(_spell(where), f"nested deeper than {MAX_JSON_DEPTH} levels")
        elif isinstance(item, Mapping):
            for key, child in item.items():
                _check_key(key, where)
                stack.append((child, depth + 1, (where, key)))
        elif isinstance(item, list | tuple):
            stack.extend((child, depth + 1, (where, i)) for i, child in enumerate(item))
        else:
            _check_scalar(item, where)


_FLAT_LEAVES: Final = frozenset({int, bool, type(None)})


def _flat(mapping: dict[Any, Any]) -> bool:
    """Whether ``mapping`` is the usual input: ASCII keys to ints, bools, None, finite floats
    and ASCII strings, nothing nested. Such a value needs no walk (this check is ~4x
    cheaper); anything else, valid or not, is left to the walk."""
    for key, item in mapping.items():
        if type(key) is not str or not key.isascii():
            return False
        kind = type(item)
        if kind is str:
            if not item.isascii():
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif kind not in _FLAT_LEAVES:
            return False
    return True


# A path as a chain of (parent, key) pairs: spelled out ("input.a[2]") only for an error.
_Path = tuple[Any, object]


def _spell(where: _Path) -> str:
    parts: list[str] = []
    node: _Path | None = where
    while node is not None:
        parent, key = node
        parts.append(f"[{key}]" if isinstance(key, int) and parent is not None else f".{key}")
        node = parent
    return "".join(reversed(parts))[1:]


def _check_key(key: object, where: _Path) -> None:
    if type(key) is str:
        if not key.isascii() and _SURROGATE.search(key):
            raise _fail(f"{_spell(where)}.{key!a}", "the key holds a lone surrogate (not UTF-8)")
    elif isinstance(key, bool) or not isinstance(key, str | int):
        raise _fail(_spell(where), f"key {key!r:.40} is not a string; JSON keys are strings")


def _check_scalar(item: object, where: _Path) -> None:
    """A leaf: str, int, finite float or Decimal, datetime, or a MediaRef (sent as its ref)."""
    global _MEDIA_REF
    if _MEDIA_REF is None:
        from .models import MediaRef  # models imports this module, so not at the top

        _MEDIA_REF = MediaRef
    if not isinstance(item, (*_SCALARS, _MEDIA_REF)):
        raise _fail(_spell(where), _unencodable_fix(item))
    if isinstance(item, float | Decimal) and not _finite(item):
        raise _fail(_spell(where), f"{item} is not a JSON number; send a finite number or null")
    if isinstance(item, datetime) and not fits_utc(item):
        raise _fail(_spell(where), OUT_OF_UTC)


_MEDIA_REF: type | None = None


OUT_OF_UTC: Final = (
    "the time is outside years 1-9999 once converted to UTC (times are sent in UTC); "
    "pass a time at least a day inside that range"
)


def fits_utc(value: datetime) -> bool:
    """Whether ``value`` can be sent: aware times are sent in UTC, which for a time in year 1
    at UTC+5 (or year 9999 at UTC-5) is no ``datetime`` at all (OverflowError)."""
    if value.tzinfo is None:
        return True
    try:
        value.astimezone(UTC)
    except OverflowError:
        return False
    return True


def _finite(number: float | Decimal) -> bool:
    return number.is_finite() if isinstance(number, Decimal) else math.isfinite(number)


def _unencodable_fix(item: object) -> str:
    kind = type(item).__name__
    if isinstance(item, date):
        return f"a {kind} cannot be sent as JSON; pass value.isoformat() or a datetime"
    if isinstance(item, set | frozenset):
        return f"a {kind} cannot be sent as JSON; pass a list, e.g. sorted(values)"
    if isinstance(item, bytes | bytearray | memoryview):
        return f"{kind} cannot be sent as JSON; upload it with gw.media.upload and pass the ref"
    return f"a {kind} cannot be sent as JSON; use str, int, float, bool, None, list or dict"


def check_top_level_fields(body: Mapping[str, Any]) -> None:
    """Refuse ``parameters``, routing fields and unknown fields in a raw run body."""
    if "parameters" in body:
        raise _fail("parameters", "the field is called params; rename it")
    for name in sorted(ROUTING_FIELDS.intersection(body)):
        raise _fail(name, _ROUTING_FIX)
    for name in sorted(set(body) - _RUN_FIELDS):
        raise _fail(str(name), f"unknown field; a run takes {', '.join(sorted(_RUN_FIELDS))}")


def validate_run_request(
    *,
    model: object,
    input: object,
    mode: object,
    scope: object,
    params: object,
    options: object,
    idempotency_key: object,
) -> None:
    """Every client-side rule for ``POST /api/runs``; the first broken one raises."""
    if not isinstance(model, str) or not model:
        raise _fail("model", "required: pass the published model slug, e.g. model='demo-echo'")
    if input is None:
        raise _fail("input", "required: pass the model input, e.g. input={'text': 'hello'}")
    check_mode_scope(mode, scope)
    if params is not None:
        _check_object("params", params)
    if options is not None:
        _check_object("options", options)
        _check_options(options)  # type: ignore[arg-type]
    check_json_value(input, "input")
    if params is not None:
        check_json_value(params, "params")
    if options is not None:
        check_json_value(options, "options")
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)


def check_upload_filename(filename: object) -> None:
    """A bare file name: non-empty, no path separators, no control characters."""
    if not isinstance(filename, str) or not filename or filename in (".", ".."):
        raise _fail("filename", "must be a non-empty file name such as 'cat.jpg'")
    if "/" in filename or "\\" in filename:
        raise _fail("filename", f"{filename!r} contains a path separator; pass the bare name")
    if _CONTROL_CHARS.search(filename):
        raise _fail("filename", f"{filename!r} contains control characters; remove them")

"""The one cattrs converter, configured in one place, and the JSON encoder for request bodies.

cattrs coerces primitives by default (``"false"`` would become ``True``, ``1.9`` would become
``1``); a Gateway answering with wrong types must instead raise a clear error, so strict
hooks are registered for every primitive (``_leaves``, the rules ``_fast`` uses too). Money
is ``Decimal`` (from strings), times are aware ``datetime`` (RFC 3339), and unknown response
fields are ignored.

Answers in their usual form never reach the converter: ``_fast`` builds them the same way.
cattrs is imported, and the converter built, for the first answer that is not usual (or
the first ``converter()`` call), never at ``import gateway_async``; ``dumps`` needs neither.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar, get_args, get_origin

from ._errors import APIResponseValidationError
from ._fast import builder
from ._leaves import LEAF_HOOKS
from .models import MediaRef, Run

if TYPE_CHECKING:
    import cattrs

__all__ = ["converter", "dumps", "make_converter", "rfc3339", "structure"]

T = TypeVar("T")


def _strict_sequences(conv: cattrs.Converter) -> None:
    """Lists and tuples only from JSON arrays: cattrs would split a string into characters.
    A bad item is named by its index (``modes[1]``)."""
    from cattrs.errors import IterableValidationError, IterableValidationNote

    def is_sequence(kind: Any) -> bool:
        return get_origin(kind) in (list, tuple)

    def factory(kind: Any) -> Any:
        origin, item = get_origin(kind), get_args(kind)[0]

        def hook(value: Any, _: Any) -> Any:
            if not isinstance(value, list):
                raise TypeError(f"expected a JSON array, got {type(value).__name__}")
            built, errors = [], []
            for index, element in enumerate(value):
                try:
                    built.append(conv.structure(element, item))
                except Exception as exc:  # noted with its index, as cattrs' own lists do
                    note = IterableValidationNote(f"item {index}", index, item)
                    exc.__notes__ = [*getattr(exc, "__notes__", []), note]
                    errors.append(exc)
            if errors:
                raise IterableValidationError(f"While structuring {kind!r}", errors, kind)
            return origin(built)

        return hook

    conv.register_structure_hook_factory(is_sequence, factory)


def rfc3339(value: datetime) -> str:
    """``value`` in UTC as the API writes times: ``2026-11-24T12:00:00Z`` (naive: UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def make_converter() -> cattrs.Converter:
    """A converter for the Gateway's JSON: strict primitives, Decimal money, aware times."""
    import cattrs

    conv = cattrs.Converter(forbid_extra_keys=False, detailed_validation=True)
    for kind, hook in LEAF_HOOKS.items():
        conv.register_structure_hook(kind, hook)
    _strict_sequences(conv)
    conv.register_unstructure_hook(Decimal, str)
    conv.register_unstructure_hook(datetime, rfc3339)
    conv.register_unstructure_hook(MediaRef, str)
    # ``Run.replayed`` comes from the Idempotent-Replayed header, never from the body.
    from cattrs.gen import make_dict_structure_fn, override

    conv.register_structure_hook(
        Run, make_dict_structure_fn(Run, conv, replayed=override(omit=True))
    )
    return conv


@functools.cache
def converter() -> cattrs.Converter:
    """The one converter, built on first use (every caller shares it)."""
    return make_converter()


def _fault(exc: BaseException, kind: type | None) -> str:
    """What was wrong with one field: our hooks' own words ("expected a decimal string such
    as '12.50', got '-0'"), else cattrs' ("required field missing")."""
    import cattrs.v

    said = str(exc)
    if isinstance(exc, TypeError | ValueError) and said.startswith("expected "):
        return said
    return cattrs.v.format_exception(exc, kind)


def structure(
    data: Any, cls: type[T], *, request_id: str | None = None, at: str | None = None
) -> T:
    """Build ``cls`` from decoded JSON, or raise APIResponseValidationError with field paths
    (from ``at``, where the object sits in the answer, e.g. ``data[3]``; else ``cls``)."""
    if type(data) is dict and (built := builder(cls)(data)) is not None:
        return built
    if not isinstance(data, dict):
        place = f" at {at}" if at else ""
        raise APIResponseValidationError(
            f"expected a JSON object for {cls.__name__}{place}, got {type(data).__name__}",
            request_id=request_id,
        )
    try:
        return converter().structure(data, cls)
    # cattrs' validation errors are ExceptionGroups: caught without importing cattrs here.
    except (ExceptionGroup, TypeError, ValueError) as exc:
        import cattrs

        where = at or cls.__name__
        problems = "; ".join(cattrs.transform_error(exc, path=where, format_exception=_fault))
        raise APIResponseValidationError(
            f"malformed {cls.__name__} in response: {problems}", request_id=request_id
        ) from exc


def _json_default(value: Any) -> Any:
    """What ``json`` cannot encode itself: MediaRef as its string, Decimal, datetime.

    Sets are refused (their order is arbitrary), as ``_validate.check_json_value`` says."""
    if isinstance(value, MediaRef):
        return value.media_ref
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return rfc3339(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_encoder = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=_json_default, allow_nan=False
)


def dumps(body: Any) -> bytes:
    """Encode a request body: compact UTF-8 JSON, MediaRef anywhere inside sent as its ref."""
    return _encoder.encode(body).encode()

"""A small JSON Schema subset for model ``input_schema`` and ``params_schema``.

Supported keywords: ``type``, ``properties``, ``required``, ``additionalProperties: false``,
``minLength``, ``minimum``, ``maximum``, and ``"format": "media_ref"`` (a string that must
name a completed upload). Each failure is a ``422`` naming the field path, e.g. ``input.image``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._errors import invalid

MEDIA_REF_FORMAT = "media_ref"
MediaCheck = Callable[[str], bool]

_TYPES: Mapping[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "null": (type(None),),
}


def _has_type(kind: str, value: object) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()  # JSON Schema: 5.0 is an integer
    return isinstance(value, _TYPES.get(kind, (object,)))


def check(schema: Mapping[str, Any], value: object, path: str, media: MediaCheck) -> None:
    """Raise a 422 naming ``path`` (or a nested field) when ``value`` breaks ``schema``."""
    kind = schema.get("type")
    if isinstance(kind, str) and not _has_type(kind, value):
        raise invalid(path, f"{path} must be a JSON {kind}, got {type(value).__name__}")
    if isinstance(value, str):
        _check_string(schema, value, path, media)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(schema, value, path)
    elif isinstance(value, dict):
        _check_object(schema, value, path, media)


def _check_string(schema: Mapping[str, Any], value: str, path: str, media: MediaCheck) -> None:
    if len(value) < schema.get("minLength", 0):
        raise invalid(path, f"{path} must not be empty")
    if schema.get("format") == MEDIA_REF_FORMAT and not media(value):
        raise invalid(
            path,
            f"{path} must be the media_ref of a completed upload; {value!r} is unknown "
            "(upload with POST /api/media/upload/init, PUT, then /complete)",
        )


def _check_number(schema: Mapping[str, Any], value: float, path: str) -> None:
    low, high = schema.get("minimum"), schema.get("maximum")
    if (low is not None and value < low) or (high is not None and value > high):
        raise invalid(path, f"{path} must be between {low} and {high}, got {value}")


def _check_object(
    schema: Mapping[str, Any], value: Mapping[str, Any], path: str, media: MediaCheck
) -> None:
    properties: Mapping[str, Any] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            raise invalid(f"{path}.{name}", f"{path}.{name} is required")
    for name, item in value.items():
        if name in properties:
            check(properties[name], item, f"{path}.{name}", media)
        elif schema.get("additionalProperties") is False:
            allowed = ", ".join(sorted(properties)) or "none"
            raise invalid(f"{path}.{name}", f"{path}.{name} is not accepted (allowed: {allowed})")

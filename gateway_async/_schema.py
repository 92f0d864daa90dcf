"""A model's ``input_schema`` read where it says enough to refuse a run before it is sent.

What is checked (the top level only): that ``input`` is an object when the schema says
``"type": "object"``; that every ``required`` field is there; that each given field of
``properties`` with a plain JSON ``type`` has that type (a ``MediaRef`` counts as a string);
and, for media, which fields take a ``media_ref`` (``"format": "media_ref"``).
What is not: nested schemas, ``enum``, ``pattern``, lengths and ranges, ``oneOf``/``anyOf``,
``additionalProperties``, ``params``: the Gateway answers those with a 422, never charged.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ._errors import InvalidRequestError
from .models import MediaRef

__all__ = ["MEDIA_FORMAT", "check_input", "media_field", "media_fields"]

MEDIA_FORMAT = "media_ref"
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (Mapping,),
    "array": (list, tuple),
    "string": (str,),
    "integer": (int,),
    "number": (int, float, Decimal),
    "boolean": (bool,),
}


def _properties(schema: Mapping[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties")
    return dict(properties) if isinstance(properties, Mapping) else {}


def media_fields(schema: Mapping[str, Any]) -> list[str]:
    """The input fields that take a ``media_ref``, in the schema's order."""
    return [
        name
        for name, spec in _properties(schema).items()
        if isinstance(spec, Mapping) and spec.get("format") == MEDIA_FORMAT
    ]


def media_field(schema: Mapping[str, Any], slug: str, given: str | None) -> str:
    """The field that takes the media of an ingest: ``given``, or the model's only one.

    A schema that declares its fields decides: ``given`` must be one of its media fields.
    One that declares none (``{"type": "object", "required": ["image"]}``) says too little,
    so ``given`` is taken as is, else its only required field. Anything else would upload
    files and send each ``media_ref`` string where the model expects text: charged runs
    that index nothing useful.
    """
    properties = _properties(schema)
    media = media_fields(schema)
    if properties:
        if given in media or (given is None and len(media) == 1):
            return given or media[0]
        if not media:
            takes = ", ".join(f"{name!r}" for name in properties)
            raise InvalidRequestError(
                f"input_field: {slug} takes {takes}, none of them media (a media_ref): ingest "
                "files with a model that takes media (e.g. demo-image-embed), or use "
                "gw.runs.create for text",
                field="input_field",
            )
        named = "" if given is None else f", not {given!r}"
        raise InvalidRequestError(
            f"input_field: {slug} takes media in {', '.join(map(repr, media))}{named}; "
            "pass input_field= one of them",
            field="input_field",
        )
    if given is not None:
        return given
    required = schema.get("required")
    if isinstance(required, list) and len(required) == 1 and isinstance(required[0], str):
        return required[0]
    raise InvalidRequestError(
        f"input_field: {slug} does not say which input field takes the media_ref; "
        "pass input_field= or input=",
        field="input_field",
    )


def _type_ok(value: object, expected: object) -> bool:
    """A plain JSON ``type`` (or a list of them); anything else is not checked here."""
    names = expected if isinstance(expected, list) else [expected]
    if "null" in names and value is None:
        return True
    kinds = [_JSON_TYPES[name] for name in names if isinstance(name, str) and name in _JSON_TYPES]
    if len(kinds) != len([n for n in names if n != "null"]):
        return True  # a type this check does not know: the Gateway decides
    if isinstance(value, bool):
        return any(bool in kind for kind in kinds)
    if "string" in names and isinstance(value, MediaRef):
        return True  # sent as its media_ref string
    return any(isinstance(value, kind) for kind in kinds)


def _json_type(value: object) -> str:
    for name, kinds in _JSON_TYPES.items():
        if isinstance(value, kinds) and not (isinstance(value, bool) and name != "boolean"):
            return name
    return "null" if value is None else type(value).__name__


def check_input(value: object, schema: Mapping[str, Any], slug: str) -> None:
    """Refuse ``value`` (a run's ``input``) where ``schema`` says it cannot work (see the
    module docstring for what is and is not checked)."""
    if schema.get("type") == "object" and not isinstance(value, Mapping):
        example = ", ".join(f'"{name}": ...' for name in _properties(schema)) or '"field": ...'
        raise InvalidRequestError(
            f"input: {slug} takes a JSON object (a dict), got {_json_type(value)} "
            f"{value!r:.40}; pass input={{{example}}}",
            field="input",
        )
    if not isinstance(value, Mapping):
        return
    required = schema.get("required")
    missing = [name for name in required or () if isinstance(name, str) and name not in value]
    if isinstance(required, list) and missing:
        raise InvalidRequestError(
            f"input: {slug} requires {', '.join(map(repr, missing))}, missing from input",
            field=f"input.{missing[0]}",
        )
    for name, spec in _properties(schema).items():
        typed = name in value and isinstance(spec, Mapping) and "type" in spec
        if typed and not _type_ok(value[name], spec["type"]):
            raise InvalidRequestError(
                f"input.{name}: {slug} expects {spec['type']}, got "
                f"{_json_type(value[name])} {value[name]!r:.40}",
                field=f"input.{name}",
            )

"""Answers in their usual form, built without cattrs.

The Gateway answers in one form: the types the contract fixes, money as plain decimal
strings, aware RFC 3339 times. Such an answer is built here, exactly as the converter would
build it; anything else gets None back and goes to the converter, which builds it or names
what is wrong. So a process whose answers are all usual never imports cattrs nor generates
its structure functions (together ~15 ms of a first upload, wallet or listing), and a Run,
on every run's path, costs half the converter's instructions. Property tests hold every
builder to the converter's result (``tests/core/test_fast_paths.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from types import UnionType
from typing import Any, Final, TypeVar, Union, get_args, get_origin

import attrs

from ._leaves import LEAF_HOOKS, PLAIN_MONEY
from .models import Run, RunError, RunUsage

__all__ = ["builder"]

T = TypeVar("T")
Builder = Callable[[dict[str, Any]], Any]  # the built object, or None: not the usual form
Check = Callable[[Any], Any]  # a field's value from its JSON; raises when not usual


class _Unusual(Exception):
    """A value out of the usual form: the converter decides what it is."""


def builder(cls: type[T]) -> Callable[[dict[str, Any]], T | None]:
    """``cls``'s builder of usual answers, made on first use (``None`` from it: not usual)."""
    found = _BUILDERS.get(cls)
    if found is None:
        check = _check(cls) if attrs.has(cls) else None
        found = _BUILDERS[cls] = _not_usual if check is None else _usual(check)
    return found


def _usual(check: Check) -> Builder:
    def build(data: dict[str, Any]) -> Any:
        try:
            return check(data)
        except (_Unusual, TypeError, ValueError):  # the converter says what is wrong
            return None

    return build


def _not_usual(data: dict[str, Any]) -> None:
    """The builder of a class with a field the checks below do not know: always the
    converter's."""


def _check(kind: Any) -> Check | None:
    """How a value of type ``kind`` is built from usual JSON, or None: only the converter
    knows ``kind``."""
    leaf = _LEAVES.get(kind)
    if leaf is not None:
        return leaf
    origin, args = get_origin(kind), get_args(kind)
    if origin in (Union, UnionType) and len(args) == 2 and type(None) in args:
        inner = _check(args[0] if args[1] is type(None) else args[1])
        return None if inner is None else _optional(inner)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _check(args[0])
        return None if item is None else _array(item)
    if origin is dict and args[:1] == (str,):
        value = _check(args[1])
        return None if value is None else _object(value)
    if isinstance(kind, type) and attrs.has(kind):
        fields = _fields(kind)
        return None if fields is None else _instance(kind, fields)
    return None


def _fields(cls: type[Any]) -> tuple[tuple[str, Check], ...] | None:
    """(name, check) of each field, or None if any field is beyond the checks."""
    try:
        attrs.resolve_types(cls)  # annotations are strings (``from __future__``)
    except NameError:
        return None
    fields = []
    for field in attrs.fields(cls):
        check = _check(field.type) if field.init and field.alias == field.name else None
        if check is None:
            return None
        fields.append((field.name, check))
    return tuple(fields)


def _instance(cls: type[Any], fields: tuple[tuple[str, Check], ...]) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not dict:
            raise _Unusual
        given = {name: field(value[name]) for name, field in fields if name in value}
        return cls(**given)  # a required field missing: TypeError, the converter's case

    return check


def _optional(inner: Check) -> Check:
    return lambda value: None if value is None else inner(value)


def _array(item: Check) -> Check:
    def check(value: Any) -> tuple[Any, ...]:
        if type(value) is not list:
            raise _Unusual
        return tuple([item(element) for element in value])

    return check


def _object(item: Check) -> Check:
    def check(value: Any) -> dict[str, Any]:
        if type(value) is not dict:
            raise _Unusual
        built = {}
        for key, element in value.items():
            if type(key) is not str:
                raise _Unusual
            built[key] = item(element)
        return built

    return check


def _leaf(hook: Callable[[Any, Any], Any], kind: type[Any]) -> Check:
    return lambda value: hook(value, kind)


# The converter's own rule for each leaf type (a TypeError or ValueError from one: not usual).
_LEAVES: Final[dict[Any, Check]] = {
    **{kind: _leaf(hook, kind) for kind, hook in LEAF_HOOKS.items()},
    Any: lambda value: value,
}


# -- Run, on every run's path: by hand --------------------------------------------------------


def build_run(data: dict[str, Any]) -> Run | None:
    """The usual Run answer, its slots set by hand (~2x cheaper than the converter).

    Only an answer whose every field has the usual type and form is built here, exactly as
    the converter would build it (a property test holds the two together); anything else
    returns None and goes to the converter, which builds it or names what is wrong.
    """
    id_, model, mode, status = (
        data.get("id"),
        data.get("model"),
        data.get("mode"),
        data.get("status"),
    )
    if not (type(id_) is str and type(model) is str and type(mode) is str and type(status) is str):
        return None
    created, scope, error = data.get("created_at"), data.get("scope"), data.get("error")
    if (
        type(created) is not str
        or "output" not in data
        or not (scope is None or type(scope) is str)
    ):
        return None
    usage = _usage(data.get("usage"))
    if usage is None or (error is not None and (error := _error(error)) is None):
        return None
    try:
        created_at = datetime.fromisoformat(created)
    except ValueError:
        return None
    if created_at.tzinfo is None:
        return None
    return _new_run(id_, model, mode, status, data["output"], usage, created_at, scope, error)


def _usage(usage: object) -> RunUsage | None:
    """``usage`` with plain money and an int duration, or None."""
    if type(usage) is not dict:
        return None
    credits, duration = usage.get("credits"), usage.get("duration_ms")
    if type(duration) is not int or type(credits) is not str or not PLAIN_MONEY.fullmatch(credits):
        return None
    built = _new(RunUsage)
    _USAGE_CREDITS(built, Decimal(credits))
    _USAGE_DURATION(built, duration)
    return built


def _error(error: object) -> RunError | None:
    """A failed run's ``error`` of two strings, or None."""
    if type(error) is dict:
        code, message = error.get("code"), error.get("message")
        if type(code) is str and type(message) is str:
            return RunError(code=code, message=message)
    return None


# Run and RunUsage built by setting their slots directly, as their attrs __init__ would
# (they have no validators or converters): half its cost with ten keyword arguments. The
# property test compares every field with the converter's Run, and a field added to Run
# without a line here fails the unpacking below on the first run.
_new = object.__new__
_USAGE_CREDITS, _USAGE_DURATION = (
    getattr(RunUsage, f.name).__set__ for f in attrs.fields(RunUsage)
)
_RUN_SLOTS = tuple(getattr(Run, field.name).__set__ for field in attrs.fields(Run))


def _new_run(
    id_: str,
    model: str,
    mode: str,
    status: str,
    output: Any,
    usage: RunUsage,
    created: datetime,
    scope: str | None,
    error: RunError | None,
) -> Run:
    set_id, set_model, set_mode, set_status, set_output, set_usage, *rest = _RUN_SLOTS
    set_created, set_scope, set_error, set_replayed = rest
    run = _new(Run)
    set_id(run, id_)
    set_model(run, model)
    set_mode(run, mode)
    set_status(run, status)
    set_output(run, output)
    set_usage(run, usage)
    set_created(run, created)
    set_scope(run, scope)
    set_error(run, error)
    set_replayed(run, False)
    return run


# Every class's builder, made on first use; Run's is by hand. (The generic one would also
# take a ``replayed`` field from the body, which only the header may set.)
_BUILDERS: Final[dict[type[Any], Builder]] = {Run: build_run}

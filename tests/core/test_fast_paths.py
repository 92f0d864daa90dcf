"""The per-run fast paths agree with the slow rules they short-cut.

A usual Run answer is built by hand (``_convert._fast_run``) and a usual flat input is
accepted without the walk (``_validate._flat``); anything else goes the slow way. Each fast
path must never accept what the slow one refuses, nor build anything else than it would.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_async import InvalidRequestError, Run, _convert, _validate
from gateway_async._convert import converter, structure
from tests.core.test_transport import RUN

USUAL: dict[str, Any] = {**RUN, "created_at": "2026-11-24T12:00:00+00:00"}

# Values of every JSON type and of the usual ones, in forms both valid and not.
_ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
_TIMES = st.sampled_from(
    ["2026-11-24T12:00:00Z", "2026-11-24T12:00:00+02:00", "2026-11-24T12:00:00", "2026-13-01"]
)
_MONEY = st.sampled_from(["0.0010", "12", "1e3", "-1", "1000000000000000", "0.0", "x", "NaN"])


_USAGE = st.fixed_dictionaries(
    {
        "credits": st.one_of(_MONEY, st.integers(), _ANY_JSON),
        "duration_ms": st.one_of(st.just(3), st.just(True), _ANY_JSON),
    }
)
# What each field may be instead of its usual value (absent included, below).
_OTHERS: dict[str, st.SearchStrategy[Any]] = {
    "id": _ANY_JSON,
    "model": _ANY_JSON,
    "mode": _ANY_JSON,
    "status": _ANY_JSON,
    "scope": st.one_of(st.just("docs"), _ANY_JSON),
    "output": _ANY_JSON,
    "error": st.one_of(st.just({"code": "c", "message": "m"}), _ANY_JSON),
    "usage": st.one_of(_USAGE, _USAGE.map(lambda u: {"credits": u["credits"]})),
    "created_at": st.one_of(_TIMES, _ANY_JSON),
    "replayed": st.booleans(),
    "extra": _ANY_JSON,
}
_ABSENT = object()


@st.composite
def _runs(draw: st.DrawFn) -> dict[str, Any]:
    """The usual answer with one to three fields changed or removed: close enough to the
    usual form that every check of the fast path is the one that decides."""
    data = dict(USUAL)
    for name in draw(st.lists(st.sampled_from(sorted(_OTHERS)), min_size=1, max_size=3)):
        value = draw(st.one_of(st.just(_ABSENT), _OTHERS[name]))
        if value is _ABSENT:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def _fields(run: Run) -> dict[str, Any]:
    """Every field, with the exact spelling of Decimals (``0.0010`` is not ``0.001``)."""
    values = attrs.asdict(run, recurse=False)
    values["usage"] = (str(run.usage.credits), run.usage.duration_ms)
    return values


@settings(max_examples=1000)
@given(_runs())
def test_a_run_built_by_hand_is_the_converters_run(data: dict[str, Any]) -> None:
    """Where the fast path builds a Run, the converter builds the same one, field by field."""
    fast = _convert._fast_run(data)
    if fast is None:
        return
    assert _fields(fast) == _fields(converter().structure(data, Run))


@given(
    st.text(min_size=1, max_size=10),
    st.sampled_from(["succeeded", "failed"]),
    st.sampled_from([None, "docs"]),
    st.integers(min_value=0, max_value=10**6),
)
def test_every_usual_answer_takes_the_fast_path(
    id_: str, status: str, scope: str | None, duration: int
) -> None:
    """The fast path is not a dead branch: any usual answer is built by it."""
    data = {**USUAL, "id": id_, "status": status, "scope": scope}
    if status == "failed":
        data["error"] = {"code": "model_error", "message": id_}
    data["usage"] = {"credits": "0.0010", "duration_ms": duration}
    fast = _convert._fast_run(data)
    assert fast is not None
    assert _fields(fast) == _fields(converter().structure(data, Run))


def test_a_usual_answer_never_reaches_the_converter(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_converter() -> Any:
        raise AssertionError("the usual run went through cattrs")

    monkeypatch.setattr(_convert, "converter", no_converter)
    run = structure(json.loads(json.dumps(USUAL)), Run)
    assert run.id == "run_1"
    assert str(run.usage.credits) == "0.0010"


@pytest.mark.parametrize("path", ["fast", "converter"])
def test_the_body_cannot_say_a_run_was_replayed(path: str) -> None:
    """Only the Idempotent-Replayed header marks a replay; a body field is ignored."""
    data: dict[str, Any] = {**USUAL, "replayed": True}
    if path == "converter":
        data["usage"] = {"credits": 1, "duration_ms": 3}  # an int credit: not the fast path
        assert _convert._fast_run(data) is None
    assert structure(data, Run).replayed is False


def test_a_field_added_to_run_breaks_the_hand_built_run() -> None:
    """The slot setters are taken from the fields, in order, and all are set."""
    run = _convert._fast_run(USUAL)
    assert run is not None
    for field in attrs.fields(Run):
        getattr(run, field.name)  # an unset slot raises AttributeError
    assert len(_convert._RUN_SLOTS) == len(attrs.fields(Run)) == 10


_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=6),
    st.sampled_from(["\ud800", "é", "\x00", "ok"]),
)
_INPUTS = st.dictionaries(
    st.one_of(st.text(max_size=4), st.sampled_from(["\udfff", "k"]), st.integers()),
    st.one_of(_LEAVES, st.lists(_LEAVES, max_size=2), st.dictionaries(st.text(), _LEAVES)),
    max_size=4,
)


def _refused(check: Any, value: Any) -> bool:
    try:
        check(value, "input")
    except InvalidRequestError:
        return True
    return False


@settings(max_examples=400)
@given(_INPUTS)
def test_a_flat_input_is_one_the_walk_accepts(value: dict[Any, Any]) -> None:
    """The shortcut never lets through what the full walk refuses, and agrees with it."""
    walk_refuses = _refused(_validate._walk, value)
    if _validate._flat(value):
        assert not walk_refuses
    assert _refused(_validate.check_json_value, value) == walk_refuses


@pytest.mark.parametrize(
    "value",
    [{"i": 1}, {"text": "hello", "n": 3, "t": 0.7, "ok": True, "none": None}, {}],
)
def test_the_usual_inputs_are_flat(value: dict[str, Any]) -> None:
    assert _validate._flat(value)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"t": float("nan")}, "input.t"),
        ({"t": "\ud800"}, "input.t"),
        ({"\udfff": 1}, "input"),
        ({1.5: 1}, "input"),
        ({"s": {1, 2}}, "input.s"),
    ],
)
def test_what_is_not_flat_is_still_refused_by_name(value: dict[Any, Any], field: str) -> None:
    assert not _validate._flat(value)
    with pytest.raises(InvalidRequestError) as caught:
        _validate.check_json_value(value, "input")
    assert caught.value.field is not None
    assert caught.value.field.startswith(field)

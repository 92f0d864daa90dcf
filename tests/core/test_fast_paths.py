"""The per-run fast paths agree with the slow rules they short-cut.

A usual Run answer is built by hand (``_fast.build_run``) and a usual flat input is
accepted without the walk (``_validate._flat``); anything else goes the slow way. Each fast
path must never accept what the slow one refuses, nor build anything else than it would.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_async import (
    InvalidRequestError,
    MarketplaceModel,
    MediaRef,
    Run,
    UsageSummary,
    Wallet,
    _convert,
    _fast,
    _validate,
)
from gateway_async._convert import converter, structure
from gateway_async._upload.parts import MultipartTicket, PartsRefresh, UploadStatus
from gateway_async.models import UploadTicket
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
    fast = _fast.build_run(data)
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
    fast = _fast.build_run(data)
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
        assert _fast.build_run(data) is None
    assert structure(data, Run).replayed is False


def test_a_field_added_to_run_breaks_the_hand_built_run() -> None:
    """The slot setters are taken from the fields, in order, and all are set."""
    run = _fast.build_run(USUAL)
    assert run is not None
    for field in attrs.fields(Run):
        getattr(run, field.name)  # an unset slot raises AttributeError
    assert len(_fast._RUN_SLOTS) == len(attrs.fields(Run)) == 10


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


# -- every other answer: the generic builder ---------------------------------------------------

_AT = "2026-11-24T12:00:00Z"
_PARTS = [{"part_number": 1, "upload_url": "http://s/p1"}, {"part_number": 2, "upload_url": "u"}]
# Each answer class in its usual form, as the emulator and the contract's examples give it.
USUAL_ANSWERS: dict[type[Any], dict[str, Any]] = {
    MediaRef: {
        "media_ref": "media_1",
        "size": 5,
        "content_type": "image/png",
        "sha256": "ab" * 32,
        "filename": "a.png",
    },
    UploadTicket: {
        "upload_id": "up_1",
        "upload_url": "http://s/put?sig=x",
        "method": "PUT",
        "headers": {"Content-Type": "image/png"},
        "expires_at": _AT,
    },
    MultipartTicket: {
        "upload_id": "up_1",
        "method": "PUT",
        "headers": {},
        "expires_at": _AT,
        "part_size": 8,
        "parts": _PARTS,
    },
    UploadStatus: {
        "upload_id": "up_1",
        "status": "pending",
        "size": 16,
        "expires_at": "2026-11-24T12:00:00+02:00",
        "part_size": 8,
        "parts": [{"part_number": 1, "size": 8, "etag": '"e1"'}],
    },
    PartsRefresh: {"parts": _PARTS, "expires_at": _AT},
    MarketplaceModel: {
        "slug": "demo-echo",
        "name": "Echo",
        "description": "d",
        "modes": ["execute"],
        "vector_modes": [],
        "input_schema": {"type": "object", "required": ["text"]},
        "params_schema": {},
        "price_per_run": "0.0010",
        "release": "r1",
    },
    Wallet: {"workspace_id": "ws", "balance": "12.50", "currency": "credits", "updated_at": _AT},
    UsageSummary: {
        "start": _AT,
        "end": _AT,
        "total_runs": 3,
        "total_credits": "0.0030",
        "by_model": [{"model": "m", "runs": 3, "credits": "0.0030"}],
    },
}
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
_VALUES = st.one_of(_SCALARS, _ANY_JSON, _TIMES, _MONEY, st.just([]), st.just({}), st.just(_PARTS))
_REFUSED = object()


def _places(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key and index path inside ``value``'s objects and arrays."""
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return []
    return [p for key, item in items for p in [(*at, key), *_places(item, (*at, key))]]


@st.composite
def _answers(draw: st.DrawFn) -> tuple[type[Any], dict[str, Any]]:
    """A usual answer with one to three places, at any depth, changed or removed (scalars
    drawn on their own: as leaves of ``_ANY_JSON`` they hardly ever come)."""
    cls = draw(st.sampled_from(list(USUAL_ANSWERS)))
    data = json.loads(json.dumps(USUAL_ANSWERS[cls]))
    for _ in range(draw(st.integers(1, 3))):
        places = _places(data)
        if not places:
            break
        *parents, last = draw(st.sampled_from(places))
        parent = data
        for key in parents:
            parent = parent[key]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[last]
        else:
            parent[last] = copy.deepcopy(draw(_VALUES))  # st.just gives one shared object
    return cls, data


def _spelled(value: Any) -> Any:
    """``value`` with every attrs instance as a dict of its type, Decimals as their exact
    spelling and times with their offset: what equality alone would not tell apart."""
    if attrs.has(type(value)):
        return (
            type(value),
            {k: _spelled(v) for k, v in attrs.asdict(value, recurse=False).items()},
        )
    if isinstance(value, tuple | list):
        return (type(value), [_spelled(v) for v in value])
    if isinstance(value, dict):
        return {k: _spelled(v) for k, v in value.items()}
    if isinstance(value, Decimal | datetime):
        return (type(value), str(value))
    return (type(value), value)


def _converters(cls: type[Any], data: dict[str, Any]) -> Any:
    try:
        return converter().structure(data, cls)
    except Exception:
        return _REFUSED


def _agree(cls: type[Any], data: dict[str, Any]) -> bool:
    """Where the generic builder builds an answer, the converter builds the same one; where
    the converter refuses it, the builder leaves it to the converter (to name the fault).
    True when the builder built it."""
    fast = _fast.builder(cls)(data)
    if fast is not None:
        slow = _converters(cls, data)
        assert slow is not _REFUSED, data
        assert _spelled(fast) == _spelled(slow), data
    return fast is not None


# Decoded JSON has only string keys; a hand-made answer (a test double's) may not.
_ONE_OFF = [None, True, 0, 7, 1.5, "x", "", [], {}, {1: "x"}, "2026-11-24T12:00:00", "1e3", _PARTS]


def test_every_single_change_of_a_usual_answer_is_built_as_the_converter_builds_it() -> None:
    """Each place of each usual answer, removed or set to each value of every JSON type:
    built the converter's way, or left to the converter."""
    built = 0
    for cls, usual in USUAL_ANSWERS.items():
        for *parents, last in _places(usual):
            for value in [_REFUSED, *_ONE_OFF]:
                data = json.loads(json.dumps(usual))
                parent = data
                for key in parents:
                    parent = parent[key]
                if value is _REFUSED and isinstance(parent, dict):
                    del parent[last]
                elif value is not _REFUSED:
                    parent[last] = copy.deepcopy(value)
                built += _agree(cls, data)
    assert built > 50  # the usual values among the changes, and the optional fields' None


@settings(max_examples=1500)
@given(_answers())
def test_every_answer_built_without_cattrs_is_the_converters(
    answer: tuple[type[Any], dict[str, Any]],
) -> None:
    """Up to three changes at once, at any depth."""
    _agree(*answer)


def _without(cls: type[Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in USUAL_ANSWERS[cls].items() if k not in names}


# Each usual answer, and the usual ones that leave out optional fields (a version-1 upload's
# status, a MediaRef the server gave no filename).
_USUAL_CASES = [
    *(pytest.param(cls, usual, id=cls.__name__) for cls, usual in USUAL_ANSWERS.items()),
    pytest.param(UploadStatus, _without(UploadStatus, "part_size", "parts"), id="v1-status"),
    pytest.param(MediaRef, _without(MediaRef, "sha256", "filename"), id="bare-MediaRef"),
]


@pytest.mark.parametrize(("cls", "usual"), _USUAL_CASES)
def test_every_usual_answer_is_built_without_cattrs(
    cls: type[Any], usual: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each answer class has a builder (none of its fields is beyond the checks), and its
    usual answer never reaches the converter."""
    expected = _spelled(converter().structure(usual, cls))

    def no_converter() -> Any:
        raise AssertionError(f"a usual {cls.__name__} went through cattrs")

    monkeypatch.setattr(_convert, "converter", no_converter)
    assert _spelled(structure(json.loads(json.dumps(usual)), cls)) == expected


@pytest.mark.parametrize(
    ("cls", "change", "field"),
    [
        (Wallet, {"balance": 12.5}, "balance"),
        (UploadTicket, {"expires_at": "2026-11-24T12:00:00"}, "expires_at"),
        (MarketplaceModel, {"modes": "execute"}, "modes"),
        (UsageSummary, {"by_model": [{"model": "m", "runs": "3", "credits": "1"}]}, "runs"),
        (MediaRef, {"size": True}, "size"),
    ],
)
def test_an_unusual_answer_still_fails_by_field(
    cls: type[Any], change: dict[str, Any], field: str
) -> None:
    """What the builder leaves to the converter is still refused, typed, naming the field."""
    from gateway_async import APIResponseValidationError

    with pytest.raises(APIResponseValidationError, match=field):
        structure({**USUAL_ANSWERS[cls], **change}, cls, request_id="req_1")

"""Client-side validation of runs: each rule refuses before any byte is sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway_async import Gateway, InvalidRequestError, RunRequest
from gateway_async._convert import dumps
from tests.conftest import FakeServer

OK: dict[str, Any] = {"model": "demo-text-embed", "input": {"text": "hi"}}

CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"model": ""}, "model", "required"),
    ({"model": None}, "model", "required"),
    ({"input": None}, "input", "required"),
    ({"mode": ""}, "mode", "non-empty"),
    ({"params": [1, 2]}, "params", "JSON object"),
    ({"params": "top_k=5"}, "params", "JSON object"),
    ({"options": ["x"]}, "options", "JSON object"),
    ({"options": {"hardware_tier": "gpu"}}, "options.hardware_tier", "published model release"),
    ({"options": {"resources": {}}}, "options.resources", "managed by the platform"),
    ({"options": {"alias": "a"}}, "options.alias", "managed by the platform"),
    ({"options": {"collection": "c"}}, "options.collection", "managed by the platform"),
    ({"options": {"namespace": "n"}}, "options.namespace", "managed by the platform"),
    ({"mode": "index"}, "scope", "required for mode 'index'"),
    ({"mode": "search"}, "scope", "required for mode 'search'"),
    ({"scope": ""}, "scope", "not a valid scope"),
    ({"scope": "-starts-with-dash"}, "scope", "start with a letter or digit"),
    ({"scope": ".hidden"}, "scope", "not a valid scope"),
    ({"scope": "has space"}, "scope", "not a valid scope"),
    ({"scope": "a/b"}, "scope", "not a valid scope"),
    ({"scope": "x" * 65}, "scope", "at most 64"),
    ({"scope": "ünïcode"}, "scope", "not a valid scope"),
    ({"idempotency_key": ""}, "idempotency_key", "printable ASCII"),
    ({"idempotency_key": "k" * 256}, "idempotency_key", "printable ASCII"),
    ({"idempotency_key": "with space"}, "idempotency_key", "printable ASCII"),
]


@pytest.mark.parametrize(("patch", "field", "fragment"), CASES)
def test_run_request_rules(patch: dict[str, Any], field: str, fragment: str) -> None:
    """Each broken rule raises InvalidRequestError naming the field and the fix."""
    with pytest.raises(InvalidRequestError, match=fragment) as info:
        RunRequest(**{**OK, **patch})
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("scope", ["a", "0", "test", "A.b_c-d", "x" * 64])
def test_valid_scopes(scope: str) -> None:
    """The contract's scope pattern accepts these."""
    assert RunRequest(**OK, mode="index", scope=scope).scope == scope


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({**OK, "parameters": {}}, "parameters", "called params"),
        ({**OK, "resources": {}}, "resources", "managed by the platform"),
        ({**OK, "alias": "x"}, "alias", "managed by the platform"),
        ({**OK, "collection": "x"}, "collection", "managed by the platform"),
        ({**OK, "namespace": "x"}, "namespace", "managed by the platform"),
        ({**OK, "hardwar": 1}, "hardwar", "unknown field"),
    ],
)
def test_raw_bodies_refuse_forbidden_top_level_fields(
    body: dict[str, Any], field: str, fragment: str
) -> None:
    """RunRequest.from_dict refuses what the contract forbids at the top level."""
    with pytest.raises(InvalidRequestError, match=fragment) as info:
        RunRequest.from_dict(body)
    assert info.value.field == field


def test_from_dict_builds_a_valid_request() -> None:
    """A clean raw body becomes a RunRequest."""
    request = RunRequest.from_dict({**OK, "mode": "index", "scope": "s"}, idempotency_key="k")
    assert request.scope == "s"
    assert request.idempotency_key == "k"


async def test_nothing_is_sent_for_an_invalid_run(server: FakeServer, gw: Gateway) -> None:
    """runs.create validates first: the server sees no request at all."""
    with pytest.raises(InvalidRequestError):
        await gw.runs.create(model="demo-text-embed", input={"text": "x"}, mode="index")
    assert server.seen == []


# -- JSON encodability: validation and the encoder agree ------------------------------------

_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and ±Infinity included
    st.text(),  # lone surrogates included
    st.decimals(),  # NaN and Infinity included
    st.datetimes(),
    st.dates(),
    st.binary(max_size=4),
    st.frozensets(st.integers(), max_size=2),
)
_KEYS = st.one_of(st.text(max_size=5), st.integers(), st.booleans(), st.tuples(st.integers()))
_VALUES = st.recursive(
    _LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(_KEYS, children, max_size=4),
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(_VALUES)
def test_a_validated_input_always_encodes(value: Any) -> None:
    """What the validation accepts, the encoder sends: no TypeError or ValueError can wait
    for the middle of a batch. (It refuses a little more than the encoder: a non-finite
    Decimal, which the encoder would send as the string "NaN".)"""
    assume(value is not None)  # "input: required", a rule of its own
    refused: InvalidRequestError | None = None
    try:
        RunRequest(model="m", input=value)
    except InvalidRequestError as exc:
        refused = exc
    if refused is None:
        json.loads(dumps(value))
    else:
        assert refused.field is not None
        assert refused.field.startswith("input")

"""Models and the converter: Decimal money, aware times, strict types, unknown fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_async import (
    APIResponseValidationError,
    MarketplaceModel,
    MediaRef,
    Run,
    RunRequest,
    UsageSummary,
    Wallet,
)
from gateway_async._convert import dumps, structure

RUN: dict[str, Any] = {
    "id": "run_1",
    "model": "demo-image-embed",
    "mode": "index",
    "scope": "test",
    "status": "failed",
    "output": None,
    "error": {"code": "bad_image", "message": "not an image"},
    "usage": {"credits": "0.0010", "duration_ms": 12},
    "created_at": "2026-11-24T12:00:00Z",
}
MODEL: dict[str, Any] = {
    "slug": "demo-image-embed",
    "name": "Demo image embed",
    "description": "d",
    "modes": ["execute", "index", "search"],
    "vector_modes": ["index", "search"],
    "input_schema": {"type": "object"},
    "params_schema": {},
    "price_per_run": "0.0010",
    "release": "2026-11-01",
}


def test_run_parses_decimal_datetime_and_nested_error() -> None:
    """Credits are exact Decimals, times aware, a failed run's error typed."""
    run = structure(RUN, Run)
    assert run.usage.credits == Decimal("0.0010")
    assert run.created_at == datetime(2026, 11, 24, 12, tzinfo=UTC)
    assert run.error is not None
    assert run.error.code == "bad_image"
    assert not run.succeeded


def test_unknown_fields_are_ignored() -> None:
    """Fields the contract may add later do not break today's client."""
    run = structure({**RUN, "new_field": {"x": 1}, "usage": {**RUN["usage"], "gpu": "a"}}, Run)
    assert run.id == "run_1"


def test_marketplace_model_fields() -> None:
    """All contract fields of a model, price as Decimal, modes as tuples."""
    model = structure(MODEL, MarketplaceModel)
    assert model.price_per_run == Decimal("0.0010")
    assert model.vector_modes == ("index", "search")


def test_wallet_and_usage_summary() -> None:
    """Wallet balance and usage credits are Decimal; by_model is typed."""
    wallet = structure(
        {
            "workspace_id": "ws",
            "balance": "12.5000",
            "currency": "credits",
            "updated_at": "2026-11-24T12:00:00+01:00",
        },
        Wallet,
    )
    assert wallet.balance == Decimal("12.5")
    assert wallet.updated_at.utcoffset() is not None
    usage = structure(
        {
            "start": "2026-11-01T00:00:00Z",
            "end": "2026-11-24T00:00:00Z",
            "total_runs": 2,
            "total_credits": "0.0020",
            "by_model": [{"model": "m", "runs": 2, "credits": "0.0020"}],
        },
        UsageSummary,
    )
    assert usage.by_model[0].credits == Decimal("0.0020")


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"usage": {"credits": 0.001, "duration_ms": 1}}, "usage.credits"),
        ({"usage": {"credits": "abc", "duration_ms": 1}}, "usage.credits"),
        ({"usage": {"credits": "NaN", "duration_ms": 1}}, "usage.credits"),
        ({"usage": {"credits": "1", "duration_ms": "12"}}, "usage.duration_ms"),
        ({"usage": {"credits": "1", "duration_ms": True}}, "usage.duration_ms"),
        ({"usage": {"credits": "1", "duration_ms": 1.9}}, "usage.duration_ms"),
        ({"id": 7}, ".id"),
        ({"status": False}, ".status"),
        ({"created_at": "yesterday"}, "created_at"),
        ({"created_at": "2026-11-24T12:00:00"}, "created_at"),
        ({"created_at": 1732449600}, "created_at"),
        ({"error": "boom"}, "error"),
    ],
)
def test_wrong_types_raise_with_the_field_path(patch: dict[str, Any], path: str) -> None:
    """cattrs would coerce; the strict converter names the bad field instead."""
    with pytest.raises(APIResponseValidationError, match="malformed Run") as info:
        structure({**RUN, **patch}, Run, request_id="req_9")
    assert path in str(info.value)
    assert info.value.request_id == "req_9"


@pytest.mark.parametrize("field", ["id", "model", "usage", "created_at", "status"])
def test_missing_required_field_is_named(field: str) -> None:
    """A response without a required field is refused, naming it."""
    body = dict(RUN)
    del body[field]
    with pytest.raises(APIResponseValidationError, match=field):
        structure(body, Run)


@pytest.mark.parametrize("body", [[RUN], "run", None, 3])
def test_non_object_response_is_refused(body: Any) -> None:
    """A JSON array (or anything but an object) where an object belongs is an error."""
    with pytest.raises(APIResponseValidationError, match="expected a JSON object"):
        structure(body, Run)


def test_media_ref_is_sent_as_its_string_anywhere_in_input() -> None:
    """A MediaRef nested in input is encoded as the plain ref string."""
    ref = MediaRef(media_ref="mref_1", size=3, content_type="image/png")
    assert str(ref) == "mref_1"
    request = RunRequest(
        model="m", input={"image": ref, "more": [ref, {"deep": ref}]}, mode="execute"
    )
    assert json.loads(dumps(request.to_body())) == {
        "model": "m",
        "mode": "execute",
        "input": {"image": "mref_1", "more": ["mref_1", {"deep": "mref_1"}]},
    }


def test_none_fields_are_omitted_from_requests() -> None:
    """Scope, params and options are left out when None; the idempotency key is a header."""
    body = RunRequest(model="m", input=1, idempotency_key="k").to_body()
    assert body == {"model": "m", "mode": "execute", "input": 1}


def test_request_body_encodes_decimal_and_datetime() -> None:
    """Decimal and datetime values inside input or params encode losslessly."""
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert json.loads(dumps({"a": Decimal("1.10"), "t": when})) == {
        "a": "1.10",
        "t": "2026-01-02T03:04:05Z",
    }


def test_non_json_values_are_refused_when_encoding() -> None:
    """An object json cannot encode fails loudly rather than being sent as garbage."""
    with pytest.raises(TypeError, match="not JSON serialisable"):
        dumps({"x": object()})
    with pytest.raises(ValueError, match="Out of range"):
        dumps({"x": float("nan")})


@given(st.decimals(min_value=0, max_value=Decimal("999999999999999.9999"), places=4))
def test_decimal_money_round_trips_exactly(value: Decimal) -> None:
    """Any amount of money (finite, 0 to 1e15) parses back to the same Decimal."""
    wallet = structure(
        {
            "workspace_id": "w",
            "balance": str(value),
            "currency": "c",
            "updated_at": "2026-11-24T12:00:00Z",
        },
        Wallet,
    )
    assert wallet.balance == value


def _money_accepted(text: str) -> bool:
    """The rule for money, spelled out: ASCII digits with at most one point (no sign,
    exponent, spaces or underscores), 0 <= amount < 1e15, at most 18 places."""
    digits, _, places = text.partition(".")
    if not (digits and digits.isascii() and digits.isdigit()):
        return False
    if "." in text and not (places and places.isascii() and places.isdigit()):
        return False
    return Decimal(text) < Decimal(10) ** 15 and len(places) <= 18


def _balance(text: str) -> Decimal:
    wallet = {"workspace_id": "w", "currency": "c", "updated_at": "2026-11-24T12:00:00Z"}
    return structure({**wallet, "balance": text}, Wallet).balance


@pytest.mark.parametrize(
    "text",
    [
        "999999999999999." + "9" * 18,  # the largest plain amount: the fast path takes it
        "1000000000000000",  # 1e15, 16 digits
        "0." + "0" * 17 + "1",  # 18 places
        "0." + "0" * 18 + "1",  # 19 places
        "0000000000000001.5",  # 16 integer digits, value 1.5: the checks, not the pattern
        "1.",
        " 1.5",
        "1_000.5",
        "1e-20",
        "1E+3",
        "-0.5",
        "NaN",
        "\u0661\u0662.\u0665",  # Arabic-Indic digits: Decimal reads them, the pattern does not
        "-0",
        "-0.0000",
        "+5",
        "12.5\n",
        "0E+999999",
        "5",
    ],
)
def test_money_fast_path_agrees_with_the_rule(text: str) -> None:
    """The plain-digits fast path (issue 25) accepts and refuses exactly what the rule does,
    at every edge of its pattern."""
    if _money_accepted(text):
        assert _balance(text) == Decimal(text)
    else:
        with pytest.raises(APIResponseValidationError, match="balance"):
            _balance(text)


@given(st.from_regex(r"-?[0-9]{1,17}(\.[0-9]{0,20})?(e-?[0-9]{1,2})?", fullmatch=True))
def test_money_rule_holds_for_any_decimal_spelling(text: str) -> None:
    """Fast path or not, any spelling of a number is accepted exactly when the rule says."""
    if _money_accepted(text):
        assert _balance(text) == Decimal(text)
    else:
        with pytest.raises(APIResponseValidationError):
            _balance(text)


def test_models_are_frozen_and_slotted() -> None:
    """Wire types cannot be mutated by accident and carry no __dict__."""
    run = structure(RUN, Run)
    with pytest.raises(AttributeError):
        run.id = "x"  # type: ignore[misc]
    assert not hasattr(run, "__dict__")


@pytest.mark.parametrize("modes", ["execute", {"execute": 1}, [1, 2]])
def test_sequences_come_only_from_arrays_of_the_right_type(modes: Any) -> None:
    """A string is not split into characters, and list items are type-checked."""
    with pytest.raises(APIResponseValidationError, match="modes"):
        structure({**MODEL, "modes": modes}, MarketplaceModel)

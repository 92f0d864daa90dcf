"""POST /api/runs: every validation rule, auth, responses of the demo engines, 402/403."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

import pytest

from gateway_async.emulator import Emulator

from .conftest import Api

TEXT = {"model": "demo-text-embed", "input": {"text": "hello"}}
ECHO = {"model": "demo-echo", "input": {"a": 1}}

# (case id, request body, expected status, expected details.field)
INVALID: list[tuple[str, dict[str, Any], int, str]] = [
    ("missing model", {"input": {}}, 422, "model"),
    ("model not a string", {"model": 3, "input": {}}, 422, "model"),
    ("empty model", {"model": "", "input": {}}, 422, "model"),
    ("missing input", {"model": "demo-echo"}, 422, "input"),
    ("null input", {"model": "demo-echo", "input": None}, 422, "input"),
    ("parameters", {**ECHO, "parameters": {}}, 422, "parameters"),
    ("params not an object", {**ECHO, "params": [1]}, 422, "params"),
    ("options not an object", {**ECHO, "options": "fast"}, 422, "options"),
    ("hardware_tier", {**ECHO, "options": {"hardware_tier": "a100"}}, 422, "options.hardware_tier"),
    ("unknown option", {**ECHO, "options": {"gpu": 1}}, 422, "options.gpu"),
    ("bad timeout", {**ECHO, "options": {"timeout_s": -1}}, 422, "options.timeout_s"),
    ("unknown field", {**ECHO, "colour": "red"}, 422, "colour"),
    ("mode not a string", {**ECHO, "mode": 5}, 422, "mode"),
    ("mode not offered", {**ECHO, "mode": "index", "scope": "s"}, 422, "mode"),
    ("index without scope", {**TEXT, "mode": "index"}, 422, "scope"),
    ("search without scope", {**TEXT, "mode": "search"}, 422, "scope"),
    ("scope too long", {**TEXT, "scope": "s" * 65}, 422, "scope"),
    ("scope with slash", {**TEXT, "scope": "a/b"}, 422, "scope"),
    ("scope starts with dash", {**TEXT, "scope": "-a"}, 422, "scope"),
    ("empty scope", {**TEXT, "scope": ""}, 422, "scope"),
    ("scope not a string", {**TEXT, "scope": 5}, 422, "scope"),
    ("input.text missing", {"model": "demo-text-embed", "input": {}}, 422, "input.text"),
    (
        "input.text wrong type",
        {"model": "demo-text-embed", "input": {"text": 5}},
        422,
        "input.text",
    ),
    ("input.text empty", {"model": "demo-text-embed", "input": {"text": ""}}, 422, "input.text"),
    ("input extra field", {**TEXT, "input": {"text": "a", "x": 1}}, 422, "input.x"),
    ("input not an object", {**TEXT, "input": "hello"}, 422, "input"),
    (
        "unknown media_ref",
        {"model": "demo-image-embed", "input": {"image": "mref_x"}},
        422,
        "input.image",
    ),
    ("top_k zero", {**TEXT, "params": {"top_k": 0}}, 422, "params.top_k"),
    ("top_k too big", {**TEXT, "params": {"top_k": 1001}}, 422, "params.top_k"),
    ("top_k a string", {**TEXT, "params": {"top_k": "5"}}, 422, "params.top_k"),
    ("top_k a bool", {**TEXT, "params": {"top_k": True}}, 422, "params.top_k"),
    ("metadata not an object", {**TEXT, "params": {"metadata": [1]}}, 422, "params.metadata"),
    ("unknown param", {**TEXT, "params": {"temperature": 1}}, 422, "params.temperature"),
    ("unknown model", {"model": "no-such-model", "input": {}}, 404, "model"),
]
INVALID += [
    (f"routing field {name}", {**ECHO, name: "x"}, 422, name)
    for name in ("resources", "alias", "collection", "namespace")
]
INVALID += [
    (f"routing option {name}", {**ECHO, "options": {name: "x"}}, 422, f"options.{name}")
    for name in ("resources", "alias", "collection", "namespace")
]


@pytest.mark.parametrize(("case", "body", "status", "field"), INVALID, ids=[c[0] for c in INVALID])
async def test_invalid_runs_are_refused_and_never_charged(
    api: Api, emu: Emulator, case: str, body: dict[str, Any], status: int, field: str
) -> None:
    reply = await api.run(**body)
    assert reply.status == status, reply.text
    error = reply.body["error"]
    assert error["code"] == ("not_found" if status == 404 else "validation_error")
    assert error["details"] == {"field": field}
    assert field.split(".")[-1] in error["message"]
    assert reply.headers["X-Request-Id"].startswith("req_")
    assert emu.stats.executions == 0
    assert emu.stats.charged_total == 0


@pytest.mark.parametrize(
    ("raw", "message"), [(b"{not json", "not valid JSON"), (b"[1, 2]", "JSON object")]
)
async def test_body_not_a_json_object_is_400(api: Api, raw: bytes, message: str) -> None:
    reply = await api.call("POST", "/api/runs", data=raw)
    assert reply.status == 400
    assert reply.body["error"]["code"] == "bad_request"
    assert message in reply.body["error"]["message"]


async def test_valid_edge_cases_are_accepted(api: Api) -> None:
    assert (await api.run(**TEXT, scope="s" * 64)).status == 200
    assert (
        await api.run(**TEXT, scope="9a._-Z", params=None, options={"timeout_s": 3})
    ).status == 200
    assert (await api.run(**ECHO, mode=None)).body["mode"] == "execute"


async def test_echo_run_has_the_contract_shape(api: Api, emu: Emulator) -> None:
    reply = await api.run(model="demo-echo", input={"text": "hi", "n": [1, 2]})
    assert reply.status == 200
    run = reply.body
    assert re.fullmatch(r"run_[0-9a-f]{24}", run["id"])
    assert run["output"] == {"text": "hi", "n": [1, 2]}
    assert (run["model"], run["mode"], run["scope"], run["status"], run["error"]) == (
        "demo-echo",
        "execute",
        None,
        "succeeded",
        None,
    )
    assert run["usage"]["credits"] == "0.0010"
    assert isinstance(run["usage"]["duration_ms"], int)
    assert run["created_at"] == "2026-11-18T11:06:40Z"
    assert reply.headers["X-Request-Id"].startswith("req_")
    assert (emu.stats.executions, emu.stats.charges) == (1, 1)
    assert emu.stats.charged_total == Decimal("0.0010")


async def test_failed_run_reports_its_error_and_is_charged(api: Api, emu: Emulator) -> None:
    reply = await api.run(**ECHO, params={"fail": "boom"})
    assert reply.status == 200
    assert reply.body["status"] == "failed"
    assert reply.body["output"] is None
    assert reply.body["error"] == {"code": "model_error", "message": "boom"}
    assert emu.stats.charges == 1


async def test_text_embedding_is_deterministic_and_normalised(api: Api) -> None:
    first = (await api.run(**TEXT)).body["output"]["embedding"]
    second = (await api.run(**TEXT)).body["output"]["embedding"]
    assert first == second
    assert len(first) == 256
    assert math.isclose(sum(v * v for v in first), 1.0)


# -- auth -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-API-Key": "wrong"}, 401),
        ({"X-API-Key": "wrong", "Authorization": "Bearer browser-token"}, 401),
        ({"Authorization": "Bearer browser-token"}, 200),
        ({"Authorization": "Bearer other"}, 401),
        ({"Authorization": "Basic browser-token"}, 401),
    ],
)
async def test_auth(api: Api, headers: dict[str, str], status: int) -> None:
    api.auth = headers
    reply = await api.get("/api/billing/wallet")
    assert reply.status == status
    assert "X-Request-Id" in reply.headers
    if status == 401:
        assert reply.body["error"]["code"] == "unauthorized"


async def test_openapi_is_public(api: Api) -> None:
    api.auth = {}
    assert (await api.get("/api/openapi.json")).status == 200


async def test_unknown_route_and_method_get_the_envelope(api: Api) -> None:
    missing = await api.get("/api/nothing")
    assert (missing.status, missing.body["error"]["code"]) == (404, "not_found")
    wrong = await api.call("DELETE", "/api/runs")
    assert wrong.status == 405
    assert wrong.headers["Allow"] == "POST"


async def test_model_restricted_to_other_keys_is_403(clock: Any, session: Any) -> None:
    extra = [{"slug": "private-echo", "allowed_keys": ["vip"]}]
    async with Emulator(api_keys=("gw_local_dev_key", "vip"), extra_models=extra) as emu:
        api = Api(session, emu)
        reply = await api.run(model="private-echo", input={})
        assert (reply.status, reply.body["error"]["code"]) == (403, "forbidden")
        api.auth = {"X-API-Key": "vip"}
        assert (await api.run(model="private-echo", input={})).status == 200
        assert emu.stats.executions == 1


# -- wallet ---------------------------------------------------------------------------


async def test_runs_debit_the_wallet_until_402(api: Api, emu: Emulator) -> None:
    emu.set_balance(Decimal("0.0025"))
    assert (await api.run(**ECHO)).status == 200
    assert (await api.run(**ECHO)).status == 200
    refused = await api.run(**ECHO)
    assert (refused.status, refused.body["error"]["code"]) == (402, "insufficient_funds")
    wallet = (await api.get("/api/billing/wallet")).body
    assert wallet["balance"] == "0.0005"
    assert emu.stats.executions == 2

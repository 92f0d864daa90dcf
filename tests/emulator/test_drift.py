"""Drift check: the SDK's attrs models and the emulator's OpenAPI schemas agree.

The emulator and the SDK are written independently on purpose, so nothing but a test keeps
them on the same contract. For each response body, every field the schema requires exists
in the SDK model with a compatible type, and every field the SDK cannot do without is
required by the schema. For the run request, every field the SDK sends is in the schema
with a compatible type, and every field the schema requires is one the SDK must be given;
and the bodies the SDK really sends to a live emulator validate against the schemas.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Union, get_args, get_origin, get_type_hints

import attrs
import jsonschema_rs  # schemathesis's validator
import pytest
from aiohttp import web

from gateway_async import models
from gateway_async.emulator import Emulator
from gateway_async.emulator import _core as core_module
from gateway_async.emulator._models import Catalogue
from gateway_async.emulator._openapi import document
from gateway_async.emulator._png import encode

ANY = frozenset({"string", "integer", "number", "boolean", "object", "array", "null"})
_SCALARS: dict[object, frozenset[str]] = {
    str: frozenset({"string"}),
    int: frozenset({"integer"}),
    float: frozenset({"number", "integer"}),
    bool: frozenset({"boolean"}),
    Decimal: frozenset({"string"}),  # decimal strings: "0.0010"
    datetime: frozenset({"string"}),  # RFC 3339 strings
    type(None): frozenset({"null"}),
}
RESPONSES = {
    "Run": models.Run,
    "Model": models.MarketplaceModel,
    "Wallet": models.Wallet,
    "UsageSummary": models.UsageSummary,
    "UploadTicket": models.UploadTicket,
    "Media": models.MediaRef,
}


def sdk_types(hint: Any) -> frozenset[str]:
    """The JSON types a Python annotation of the SDK can hold."""
    origin = get_origin(hint)
    if hint is Any:
        return ANY
    if origin in (Union, types.UnionType):
        return frozenset().union(*(sdk_types(arg) for arg in get_args(hint)))
    if attrs.has(hint) or hint is dict or origin in (dict, Mapping):
        return frozenset({"object"})
    if origin in (tuple, list):
        return frozenset({"array"})
    return _SCALARS[hint]


class Schemas:
    """Resolves ``$ref`` and answers questions about one OpenAPI document's schemas."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.components: dict[str, Any] = doc["components"]["schemas"]

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        return schema if ref is None else self.resolve(self.components[ref.rsplit("/", 1)[1]])

    def types(self, schema: dict[str, Any]) -> frozenset[str]:
        """The JSON types a schema admits (ANY when it does not say)."""
        schema = self.resolve(schema)
        if "anyOf" in schema:
            return frozenset().union(*(self.types(s) for s in schema["anyOf"]))
        if "const" in schema or "enum" in schema:
            values = schema["enum"] if "enum" in schema else [schema["const"]]
            return frozenset(_json_type(value) for value in values)
        kind = schema.get("type")
        return ANY if kind is None else frozenset([kind] if isinstance(kind, str) else kind)

    def objects(self, schema: dict[str, Any]) -> list[dict[str, Any]]:
        """The object schemas inside ``schema`` (through refs, anyOf and array items)."""
        schema = self.resolve(schema)
        if "anyOf" in schema:
            return [obj for sub in schema["anyOf"] for obj in self.objects(sub)]
        if "items" in schema:
            return self.objects(schema["items"])
        return [schema] if "properties" in schema else []


def _json_type(value: object) -> str:
    names = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}
    return names[type(value)]


def _element(hint: Any) -> Any:
    """The attrs class a field holds (directly, optionally, or as tuple items), if any."""
    for arg in (hint, *get_args(hint)):
        if attrs.has(arg):
            return arg
    return None


def response_drift(schemas: Schemas, schema: dict[str, Any], cls: type, path: str) -> list[str]:
    """Where the SDK model ``cls`` could not read what ``schema`` promises."""
    problems = []
    hints = get_type_hints(cls)
    fields = {field.name: field for field in attrs.fields(cls)}
    for obj in schemas.objects(schema):
        required = set(obj.get("required", ()))
        for name in sorted(required - set(fields)):
            problems.append(f"{path}.{name}: required by the schema, missing in {cls.__name__}")
        for name, field in fields.items():
            where = f"{path}.{name}"
            if field.default is attrs.NOTHING and name not in required:
                problems.append(f"{where}: the SDK needs it, the schema does not require it")
            if name not in obj["properties"]:
                continue
            prop = obj["properties"][name]
            extra = schemas.types(prop) - sdk_types(hints[name])
            if extra:
                problems.append(f"{where}: the schema allows {sorted(extra)}, the SDK does not")
            inner = _element(hints[name])
            if inner is not None:
                problems += response_drift(schemas, prop, inner, where)
    return problems


def _core_for_document() -> Any:
    """A stand-in with what ``document()`` reads: the default catalogue and upload limit."""
    settings = types.SimpleNamespace(max_upload_size=5 * 1024**3)
    return types.SimpleNamespace(catalogue=Catalogue(), settings=settings)


@pytest.fixture(scope="module")
def schemas() -> Schemas:
    return Schemas(document(_core_for_document()))


@pytest.mark.parametrize("name", list(RESPONSES))
def test_response_schemas_and_sdk_models_agree(schemas: Schemas, name: str) -> None:
    """Each response the SDK parses carries every field its model needs, with its type."""
    schema = {"$ref": f"#/components/schemas/{name}"}
    assert response_drift(schemas, schema, RESPONSES[name], name) == []


def test_run_request_fields_are_the_schemas(schemas: Schemas) -> None:
    """Every field RunRequest sends is in every run-request variant with a compatible type;
    what the schema requires, the SDK requires too."""
    hints = get_type_hints(models.RunRequest)
    sent = {f.name: f for f in attrs.fields(models.RunRequest) if f.name != "idempotency_key"}
    variants = schemas.objects({"$ref": "#/components/schemas/RunRequest"})
    assert len(variants) == 5  # echo: execute; text, image: execute and index/search
    for variant in variants:
        assert set(sent) == set(variant["properties"])
        must = {name for name, field in sent.items() if field.default is attrs.NOTHING}
        assert must <= set(variant["required"]) <= {*must, "mode", "scope"}
        for name, prop in variant["properties"].items():
            sends = sdk_types(hints[name]) - {"null"}  # to_body() leaves None fields out
            assert sends == ANY - {"null"} or sends <= schemas.types(prop), name


def test_the_check_sees_drift(schemas: Schemas) -> None:
    """The check reports a field the schema requires and the SDK lacks, and a type clash."""
    wallet = schemas.components["Wallet"]
    drifted = {
        **wallet,
        "required": [*wallet["required"], "owner"],
        "properties": {**wallet["properties"], "owner": {"type": "string"}, "balance": {}},
    }
    assert response_drift(schemas, drifted, models.Wallet, "Wallet") == [
        "Wallet.owner: required by the schema, missing in Wallet",
        "Wallet.balance: the schema allows "
        "['array', 'boolean', 'integer', 'null', 'number', 'object'], the SDK does not",
    ]


def record_bodies(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Every (path, JSON body) the emulator reads from now on, in order."""
    seen: list[tuple[str, Any]] = []
    read_object = core_module.read_object

    async def recording(request: web.Request) -> tuple[bytes, dict[str, Any]]:
        raw, body = await read_object(request)
        seen.append((request.path, body))
        return raw, body

    monkeypatch.setattr(core_module, "read_object", recording)
    return seen


async def test_the_sdks_requests_validate_against_the_document(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the SDK really sends (runs, upload init and complete) is valid for the schema."""
    seen = record_bodies(monkeypatch)
    async with emu.client() as gw:
        image = await gw.media.upload(encode(2, 2, bytes(12)), filename="a.png")
        await gw.runs.create(
            model="demo-image-embed",
            mode="index",
            scope="s",
            input={"image": image},
            params={"metadata": {"k": "v"}},
            options={"timeout_s": 5},
        )
        await gw.runs.create(model="demo-echo", input={"a": [1, None]})
    components = document(emu.core)["components"]
    names = {
        "/api/runs": "RunRequest",
        "/api/media/upload/init": "UploadInit",
        "/api/media/upload/complete": "UploadComplete",
    }
    assert {path for path, _ in seen} == set(names)
    for path, body in seen:
        schema = {"$ref": f"#/components/schemas/{names[path]}", "components": components}
        assert jsonschema_rs.validator_for(schema).is_valid(body), (path, body)

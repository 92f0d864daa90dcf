"""The emulator's OpenAPI 3.1 description, served at ``GET /api/openapi.json``.

A test compares its paths and methods with the routes the app registers, so the two
cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ._errors import json_response

_STR = {"type": "string"}
_INT = {"type": "integer"}
_OBJ = {"type": "object"}
_DEC = {"type": "string", "pattern": r"^-?\d+\.\d{4}$"}
_TIME = {"type": "string", "format": "date-time"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        ["error"], error=_obj(["code", "message", "details"], code=_STR, message=_STR, details=_OBJ)
    ),
    "RunRequest": _obj(
        ["model", "input"],
        model=_STR,
        mode={"type": "string", "default": "execute"},
        scope={"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
        input={},
        params=_OBJ,
        options=_obj([], timeout_s={"type": "number"}),
    ),
    "Run": _obj(
        ["id", "model", "mode", "status", "output", "error", "usage", "created_at"],
        id=_STR,
        model=_STR,
        mode=_STR,
        scope={"type": ["string", "null"]},
        status={"enum": ["succeeded", "failed"]},
        output={},
        error={"type": ["object", "null"]},
        usage=_obj(["credits", "duration_ms"], credits=_DEC, duration_ms=_INT),
        created_at=_TIME,
    ),
    "Model": _obj(
        ["slug", "name", "modes", "price_per_run"],
        slug=_STR,
        name=_STR,
        description=_STR,
        modes={"type": "array", "items": _STR},
        vector_modes={"type": "array", "items": _STR},
        input_schema=_OBJ,
        params_schema=_OBJ,
        price_per_run=_DEC,
        release=_STR,
    ),
    "ModelPage": _obj(
        ["data", "next_cursor"],
        data={"type": "array", "items": _ref("Model")},
        next_cursor={"type": ["string", "null"]},
    ),
    "UploadInit": _obj(
        ["filename", "content_type", "size"],
        filename=_STR,
        content_type=_STR,
        size=_INT,
        sha256=_STR,
    ),
    "UploadTicket": _obj(
        ["upload_id", "upload_url", "method", "headers", "expires_at"],
        upload_id=_STR,
        upload_url=_STR,
        method={"const": "PUT"},
        headers=_OBJ,
        expires_at=_TIME,
    ),
    "UploadComplete": _obj(["upload_id"], upload_id=_STR, sha256=_STR),
    "Media": _obj(
        ["media_ref", "size", "content_type", "sha256", "filename"],
        media_ref=_STR,
        size=_INT,
        content_type=_STR,
        sha256=_STR,
        filename=_STR,
    ),
    "Wallet": _obj(
        ["workspace_id", "balance", "currency", "updated_at"],
        workspace_id=_STR,
        balance=_DEC,
        currency=_STR,
        updated_at=_TIME,
    ),
    "UsageSummary": _obj(
        ["start", "end", "total_runs", "total_credits", "by_model"],
        start=_TIME,
        end=_TIME,
        total_runs=_INT,
        total_credits=_DEC,
        by_model={
            "type": "array",
            "items": _obj(["model", "runs", "credits"], model=_STR, runs=_INT, credits=_DEC),
        },
    ),
}


def _op(summary: str, status: int, schema: str, body: str | None = None, **params: str) -> Any:
    json_of = {"application/json": {"schema": _ref(schema)}}
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {
            str(status): {"description": "success", "content": json_of},
            "default": {
                "description": "error",
                "content": {"application/json": {"schema": _ref("Error")}},
            },
        },
        "parameters": [
            {"name": name, "in": where, "required": where == "path", "schema": _STR}
            for name, where in params.items()
        ],
    }
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return operation


PATHS: dict[str, dict[str, Any]] = {
    "/api/runs": {"post": _op("Execute a model run", 200, "Run", "RunRequest")},
    "/api/media/upload/init": {
        "post": _op("Start a media upload", 201, "UploadTicket", "UploadInit")
    },
    "/api/media/upload/complete": {
        "post": _op("Complete a media upload", 200, "Media", "UploadComplete")
    },
    "/api/marketplace/models": {
        "get": _op("List models", 200, "ModelPage", limit="query", cursor="query", q="query")
    },
    "/api/marketplace/models/{slug}": {"get": _op("Load one model", 200, "Model", slug="path")},
    "/api/billing/wallet": {"get": _op("Load the workspace wallet", 200, "Wallet")},
    "/api/billing/usage/summary": {
        "get": _op("Summarise usage", 200, "UsageSummary", start="query", end="query")
    },
    "/api/openapi.json": {
        "get": {
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1"}},
        }
    },
}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Gateway (local emulator)", "version": "1"},
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "browserSession": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"apiKey": []}, {"browserSession": []}],
    }


async def openapi(_: web.Request) -> web.Response:
    """Serve :func:`document` (no credentials needed)."""
    return json_response(document())

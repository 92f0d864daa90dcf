"""The emulator's OpenAPI 3.1 description, served at ``GET /api/openapi.json``.

It is the contract's machine-readable form, strict enough to fuzz against: a request the
document calls valid is accepted (2xx, or 401/403/404/409 for credentials and resources),
and one it calls invalid gets a 4xx. So it states the headers (``Idempotency-Key`` in,
``X-Request-Id`` on every answer, ``Retry-After`` on 429, ``Idempotent-Replayed`` on a
replay), every status each operation can answer with the error envelope, integer and
bounded ``limit``, the patterns the validators use (imported from them, so the two cannot
disagree), and ``additionalProperties: false`` wherever the contract fixes a shape.

The run request is built from this emulator's catalogue: one variant per model and kind
of mode, with the model's own ``input_schema`` and ``params_schema``, so that "scope is
required for vector modes" and "mode must be offered" are schema facts, not surprises.
A test compares paths and methods with the routes the app registers.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ._core import CORE, Core
from ._errors import CODES, EXTRA_CODES, json_response
from ._idempotency import HEADER, KEY_PATTERN, REPLAYED
from ._models import CURSOR_PATTERN, ModelSpec
from ._uploads import CONTENT_TYPE_PATTERN, FILENAME_PATTERN, MAX_FILENAME, SHA256_PATTERN
from ._validate import OPTIONS, SCOPE_PATTERN

Schema = dict[str, Any]
_STR: Schema = {"type": "string"}
_NULL: Schema = {"type": "null"}
_CREDITS: Schema = {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{4}$"}
_DECIMAL: Schema = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}
_TIME: Schema = {"type": "string", "format": "date-time"}
_COUNT: Schema = {"type": "integer", "minimum": 0}
_SCOPE: Schema = {"type": "string", "pattern": SCOPE_PATTERN}
_SHA256: Schema = {"type": "string", "pattern": SHA256_PATTERN}
_OPTIONS: Schema = {
    "type": "object",
    "properties": {name: {"type": "number", "exclusiveMinimum": 0} for name in OPTIONS},
    "additionalProperties": False,
}
_WHY = {
    400: "The body is not UTF-8 JSON (NaN, Infinity, a number beyond a double, nesting over "
    "64 levels) or not an object",
    401: "No or bad credentials",
    402: "The wallet balance is below the run's price",
    403: "This key may not use this model",
    404: "Unknown model, upload or media_ref",
    408: "The request body stalled for the idle timeout; the connection is closed",
    409: "Idempotency-Key reused with another body, or an upload that cannot complete",
    410: "The upload expired (final: parts and complete answer 410 from then on)",
    413: "Declared or sent size above the limit",
    415: "A Content-Encoding other than gzip or deflate",
    422: "A field is missing, of the wrong type, or not allowed (details.field names it)",
    429: "Too many requests; retry after Retry-After seconds",
    500: "Unexpected server error (safe to retry idempotent calls)",
    503: "Temporarily unavailable (safe to retry idempotent calls)",
}
_ALWAYS = (429, 500, 503)
_POSTED = (400, 401, 408, 409, 413, 415, 422)


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, _NULL]}


def _obj(required: list[str], **props: Any) -> Schema:
    """A closed object: exactly these properties, ``required`` among them."""
    return {
        "type": "object",
        "required": required,
        "properties": props,
        "additionalProperties": False,
    }


def _closed(**props: Any) -> Schema:
    """A closed object whose properties are all required."""
    return _obj(list(props), **props)


def _header(schema: Schema, description: str, *, required: bool = True) -> Schema:
    return {"description": description, "required": required, "schema": schema}


_REQUEST_ID = _header(
    {"type": "string", "pattern": "^req_[0-9a-f]{24}$"}, "Names this request in the emulator's log"
)


def _run_input(model: ModelSpec) -> Schema:
    schema = dict(model.input_schema)
    return schema if "type" in schema else {"allOf": [{"not": _NULL}, schema]}


def _run_variant(model: ModelSpec, modes: list[str], *, vector: bool) -> Schema:
    """Requests for ``model`` in ``modes``; a vector mode needs a scope, a missing mode
    (or null) means ``execute``."""
    default_ok = "execute" in modes
    required = ["model", "input"]
    required += [] if default_ok else ["mode"]
    required += ["scope"] if vector else []
    return _obj(
        required,
        model={"const": model.slug},
        mode={"enum": [*modes, None] if default_ok else modes},
        scope=_SCOPE if vector else _nullable(_SCOPE),
        input=_run_input(model),
        params=_nullable(dict(model.params_schema)),
        options=_nullable(_OPTIONS),
    )


def run_request(core: Core) -> Schema:
    """``POST /api/runs`` bodies this emulator accepts, one variant per model and kind of mode."""
    variants = []
    for model in core.catalogue.models():
        plain = [m for m in model.modes if m not in model.vector_modes]
        vector = [m for m in model.modes if m in model.vector_modes]
        variants += [_run_variant(model, plain, vector=False)] if plain else []
        variants += [_run_variant(model, vector, vector=True)] if vector else []
    return {"anyOf": variants}


_MEDIA: Schema = {
    "media_ref": _STR,
    "size": _COUNT,
    "content_type": _STR,
    "sha256": _SHA256,
    "filename": _STR,
}
_PART_NUMBER: Schema = {"type": "integer", "minimum": 1}
_PART_URL = _closed(part_number=_PART_NUMBER, upload_url={"type": "string", "format": "uri"})
_PARTS_DONE: Schema = {
    "type": "array",
    "minItems": 1,
    "items": _obj(
        ["part_number", "etag"], part_number=_PART_NUMBER, etag=_STR, sha256=_nullable(_SHA256)
    ),
}


def _multipart_schemas() -> Schema:
    """Contract version 2: init's multipart answer, part URL refresh, the parts listing."""
    return {
        "InitAnswer": {"anyOf": [_ref("UploadTicket"), _ref("MultipartTicket")]},
        "MultipartTicket": _closed(
            upload_id=_STR,
            method={"const": "PUT"},
            headers={"type": "object", "additionalProperties": _STR},
            expires_at=_TIME,
            part_size={"type": "integer", "minimum": 1},
            parts={"type": "array", "minItems": 1, "items": _PART_URL},
        ),
        "PartsRefresh": _closed(
            upload_id={"type": "string", "minLength": 1},
            part_numbers={"type": "array", "minItems": 1, "items": _PART_NUMBER},
        ),
        "PartUrls": _closed(parts={"type": "array", "items": _PART_URL}, expires_at=_TIME),
        "UploadStatus": _closed(
            upload_id=_STR,
            status={"enum": ["pending", "completed"]},
            size=_COUNT,
            part_size=_nullable({"type": "integer", "minimum": 1}),
            parts={
                "type": "array",
                "items": _closed(part_number=_PART_NUMBER, size=_COUNT, etag=_STR),
            },
            expires_at=_TIME,
        ),
    }


def schemas(core: Core) -> Schema:
    """The components: every request and response body."""
    strings = {"type": "array", "items": _STR}
    model_fields: Schema = {
        "slug": _STR,
        "name": _STR,
        "description": _STR,
        "modes": strings,
        "vector_modes": strings,
        "input_schema": {"type": "object"},
        "params_schema": {"type": "object"},
        "price_per_run": _DECIMAL,
        "release": _STR,
    }
    details = {"type": "object", "properties": {"field": _STR}, "additionalProperties": False}
    envelope = _closed(
        code={"enum": sorted({*CODES.values(), *EXTRA_CODES})},
        message=_STR,
        details=details,
    )
    return {
        "Error": _closed(error=envelope),
        "RunRequest": run_request(core),
        "Run": _closed(
            id={"type": "string", "pattern": "^run_[0-9a-f]{24}$"},
            model=_STR,
            mode=_STR,
            scope=_nullable(_SCOPE),
            status={"enum": ["succeeded", "failed"]},
            output={},
            error=_nullable(_closed(code=_STR, message=_STR)),
            usage=_closed(credits=_CREDITS, duration_ms=_COUNT),
            created_at=_TIME,
        ),
        "Model": _closed(**model_fields),
        "ModelPage": _closed(
            data={"type": "array", "items": _ref("Model")},
            next_cursor=_nullable({"type": "string", "pattern": CURSOR_PATTERN}),
        ),
        "UploadInit": _obj(
            ["filename", "content_type", "size"],
            filename={
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_FILENAME,
                "pattern": FILENAME_PATTERN,
            },
            content_type={"type": "string", "pattern": CONTENT_TYPE_PATTERN},
            size={"type": "integer", "minimum": 0, "maximum": core.settings.max_upload_size},
            sha256=_nullable(_SHA256),
        ),
        "UploadTicket": _closed(
            upload_id=_STR,
            upload_url={"type": "string", "format": "uri"},
            method={"const": "PUT"},
            headers={"type": "object", "additionalProperties": _STR},
            expires_at=_TIME,
        ),
        "UploadComplete": _obj(
            ["upload_id"],
            upload_id={"type": "string", "minLength": 1},
            sha256=_nullable(_SHA256),
            parts=_PARTS_DONE,
        ),
        **_multipart_schemas(),
        "Media": _closed(**_MEDIA),
        # Contract version 3: init for content this workspace already holds.
        "HeldUpload": _closed(**_MEDIA, deduplicated={"const": True}),
        "Wallet": _closed(
            workspace_id=_STR,
            balance=_CREDITS,
            currency={"const": "credits"},
            updated_at=_TIME,
        ),
        "UsageSummary": _closed(
            start=_TIME,
            end=_TIME,
            total_runs=_COUNT,
            total_credits=_CREDITS,
            by_model={
                "type": "array",
                "items": _closed(model=_STR, runs=_COUNT, credits=_CREDITS),
            },
        ),
    }


def _error(status: int) -> Schema:
    headers = {"X-Request-Id": _REQUEST_ID}
    if status == 429:
        headers["Retry-After"] = _header({"type": "string", "pattern": "^[0-9]+$"}, "Seconds")
    content = {"application/json": {"schema": _ref("Error")}}
    return {"description": _WHY[status], "headers": headers, "content": content}


def _op(
    summary: str,
    success: tuple[int, str],
    errors: tuple[int, ...],
    *,
    body: str | None = None,
    params: tuple[Schema, ...] = (),
    also: tuple[tuple[int, str], ...] = (),
) -> Schema:
    headers = {"X-Request-Id": _REQUEST_ID}
    if body is not None:
        replayed = _header({"const": "true"}, "This is the stored first answer", required=False)
        headers[REPLAYED] = replayed
    responses = {
        str(status): {
            "description": "success",
            "headers": headers,
            "content": {"application/json": {"schema": _ref(schema)}},
        }
        for status, schema in (success, *also)
    }
    responses |= {str(s): _error(s) for s in sorted({*errors, *_ALWAYS})}
    operation: Schema = {"summary": summary, "parameters": list(params), "responses": responses}
    if body is not None:
        operation["parameters"].append(_IDEMPOTENCY_KEY)
        content = {"application/json": {"schema": _ref(body)}}
        operation["requestBody"] = {"required": True, "content": content}
    return operation


def _param(name: str, where: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


_IDEMPOTENCY_KEY = _param(
    HEADER,
    "header",
    {"type": "string", "pattern": KEY_PATTERN},
    "1 to 255 printable ASCII characters; the same key and body replay the first answer",
)
_LIST_PARAMS = (
    _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 100}, "Page size"),
    _param("cursor", "query", {"type": "string", "pattern": CURSOR_PATTERN}, "next_cursor"),
    _param("q", "query", _STR, "Case-insensitive substring of slug, name or description"),
)
_SLUG = _param("slug", "path", {"type": "string", "minLength": 1}, "One path segment")
_UPLOAD = _param("upload_id", "path", {"type": "string", "minLength": 1}, "From upload/init")
_WINDOW = (
    _param("start", "query", _TIME, "Default: 30 days before end"),
    _param("end", "query", _TIME, "Default: now; a window ending before it starts is empty"),
)


def paths() -> Schema:
    """Every operation with every status it answers."""
    return {
        "/api/runs": {
            "post": _op(
                "Execute a model run", (200, "Run"), (*_POSTED, 402, 403, 404), body="RunRequest"
            )
        },
        "/api/media/upload/init": {
            "post": _op(
                "Start a media upload (200: content already held, version 3)",
                (201, "InitAnswer"),
                _POSTED,
                body="UploadInit",
                also=((200, "HeldUpload"),),
            )
        },
        "/api/media/upload/parts": {
            "post": _op(
                "Re-sign part URLs of a multipart upload",
                (200, "PartUrls"),
                (*_POSTED, 404, 410),
                body="PartsRefresh",
            )
        },
        "/api/media/upload/{upload_id}": {
            "get": _op(
                "List the parts storage holds", (200, "UploadStatus"), (401, 404), params=(_UPLOAD,)
            )
        },
        "/api/media/upload/complete": {
            "post": _op(
                "Complete a media upload",
                (200, "Media"),
                (*_POSTED, 404, 410),
                body="UploadComplete",
            )
        },
        "/api/marketplace/models": {
            "get": _op("List models", (200, "ModelPage"), (401, 422), params=_LIST_PARAMS)
        },
        "/api/marketplace/models/{slug}": {
            "get": _op("Load one model", (200, "Model"), (401, 404), params=(_SLUG,))
        },
        "/api/billing/wallet": {"get": _op("Load the workspace wallet", (200, "Wallet"), (401,))},
        "/api/billing/usage/summary": {
            "get": _op("Summarise usage", (200, "UsageSummary"), (401, 422), params=_WINDOW)
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "headers": {"X-Request-Id": _REQUEST_ID},
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **{str(status): _error(status) for status in _ALWAYS},
                },
            }
        },
    }


def document(core: Core) -> Schema:
    """The OpenAPI 3.1 document of this emulator (its catalogue and upload limit)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Gateway (local emulator)", "version": "1"},
        "paths": paths(),
        "components": {
            "schemas": schemas(core),
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "browserSession": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"apiKey": []}, {"browserSession": []}],
    }


async def openapi(request: web.Request) -> web.Response:
    """Serve :func:`document` (no credentials needed)."""
    return json_response(document(request.app[CORE]))

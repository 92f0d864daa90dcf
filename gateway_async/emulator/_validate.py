"""The contract's rules for a ``POST /api/runs`` body, each a 422 naming its field.

Order: the body's shape (fields, types, scope pattern, options), then the model (404
unknown, mode offered, scope for vector modes), then ``params`` and ``input`` against the
model's schemas (media refs must name completed uploads).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ._errors import ApiError, invalid
from ._models import Catalogue, ModelSpec
from ._schema import MediaCheck, check

FIELDS = ("model", "mode", "scope", "input", "params", "options")
ROUTING_FIELDS = ("resources", "alias", "collection", "namespace")
OPTIONS = ("timeout_s",)
SCOPE_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # also in the OpenAPI document
SCOPE = re.compile(SCOPE_PATTERN)


@dataclass(frozen=True)
class RunSpec:
    """A validated run request."""

    model: ModelSpec
    mode: str
    scope: str | None
    input: Any
    params: dict[str, Any]


def validate_run(body: dict[str, Any], catalogue: Catalogue, media: MediaCheck) -> RunSpec:
    """Check ``body`` against every rule; return what the engine needs."""
    _check_fields(body)
    slug, mode, scope = body["model"], body.get("mode"), body.get("scope")
    mode = "execute" if mode is None else mode  # null means "not given" for optional fields
    params, options = body.get("params") or {}, body.get("options") or {}
    _check_scope(scope)
    _check_options(options)
    model = catalogue.get(slug)
    if model is None:
        raise ApiError(
            404,
            f"no published model {slug!r}; list models with GET /api/marketplace/models",
            field="model",
        )
    _check_mode(model, mode, scope)
    check(model.params_schema, params, "params", media)
    check(model.input_schema, body["input"], "input", media)
    return RunSpec(model, mode, scope, body["input"], params)


def _check_fields(body: dict[str, Any]) -> None:
    for name in ROUTING_FIELDS:
        if name in body:
            raise invalid(name, f"{name} is a routing field managed by the platform; remove it")
    if "parameters" in body:
        raise invalid("parameters", "send model parameters as params, not parameters")
    for name in body:
        if name not in FIELDS:
            raise invalid(name, f"unknown field {name!r}; allowed fields: {', '.join(FIELDS)}")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise invalid("model", "model is required: the published model slug, as a string")
    if body.get("input") is None:
        raise invalid("input", "input is required: the model input, shaped by its input_schema")
    if not isinstance(body.get("mode", ""), str | None):
        raise invalid("mode", "mode must be a string such as 'execute', 'index' or 'search'")
    for name in ("params", "options"):
        if not isinstance(body.get(name, {}), dict | None):
            raise invalid(name, f"{name} must be a JSON object")


def _check_scope(scope: object) -> None:
    if scope is None:
        return
    if not isinstance(scope, str) or not SCOPE.fullmatch(scope):
        raise invalid(
            "scope",
            "scope must start with a letter or digit and hold only letters, digits, '.', "
            "'_' and '-', at most 64 characters",
        )


def _check_options(options: dict[str, Any]) -> None:
    for name, value in options.items():
        field = f"options.{name}"
        if name == "hardware_tier":
            raise invalid(
                field,
                "do not send options.hardware_tier: hardware comes from the "
                "published model release",
            )
        if name in ROUTING_FIELDS:
            raise invalid(field, f"{field} is a routing field managed by the platform; remove it")
        if name not in OPTIONS:
            raise invalid(field, f"{field} is not an execution option (allowed: timeout_s)")
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise invalid(field, f"{field} must be a positive number of seconds")


def _check_mode(model: ModelSpec, mode: str, scope: str | None) -> None:
    if mode not in model.modes:
        offered = ", ".join(model.modes)
        raise invalid(
            "mode", f"model {model.slug!r} does not offer mode {mode!r} (modes: {offered})"
        )
    if mode in model.vector_modes and scope is None:
        raise invalid("scope", f"scope is required for mode {mode!r} of model {model.slug!r}")

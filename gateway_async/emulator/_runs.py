"""``POST /api/runs``: validate, check access and funds, charge, execute synchronously.

The price is debited before the engine runs (so concurrent runs cannot overdraw the
wallet) and refunded only if the engine crashes. A run whose model reports a failure
(``demo-echo`` with ``params.fail``) is charged: it executed.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from ._core import Core, credential, idempotent_post
from ._embed import embed_text
from ._errors import ApiError, json_response
from ._idempotency import HEADER
from ._validate import RunSpec, validate_run
from ._vectors import DEFAULT_COLLECTION, Item
from ._wire import credits, new_id, rfc3339


async def create_run(request: web.Request) -> web.Response:
    """Handle ``POST /api/runs``."""
    return await idempotent_post(request, lambda core, body: _run(core, request, body))


async def _run(core: Core, request: web.Request, body: dict[str, Any]) -> web.Response:
    spec = validate_run(body, core.catalogue, lambda ref: ref in core.state.media)
    model = spec.model
    if not model.allows(credential(request)):
        raise ApiError(403, f"this API key may not run model {model.slug!r}", field="model")
    if core.state.balance < model.price:
        raise ApiError(
            402,
            f"wallet balance {core.state.balance} is below the price {model.price} of model "
            f"{model.slug!r}; top up the workspace wallet",
        )
    run_id, created, started = new_id("run"), core.clock(), time.perf_counter()
    core.state.charge(run_id, model.slug, model.price)
    try:
        output, error = await _execute(core, spec)
    except Exception:
        core.state.refund(run_id, model.price)
        raise
    _count(core, request, spec)
    return json_response(
        {
            "id": run_id,
            "model": model.slug,
            "mode": spec.mode,
            "scope": spec.scope,
            "status": "failed" if error else "succeeded",
            "output": output,
            "error": error,
            "usage": {
                "credits": credits(model.price),
                "duration_ms": int((time.perf_counter() - started) * 1000),
            },
            "created_at": rfc3339(created),
        }
    )


def _count(core: Core, request: web.Request, spec: RunSpec) -> None:
    stats = core.stats
    stats.executions += 1
    stats.charges += 1
    stats.charged_total += spec.model.price
    key = request.headers.get(HEADER)
    if key is not None:
        stats.executions_by_idempotency_key[key] += 1


async def _execute(core: Core, spec: RunSpec) -> tuple[Any, dict[str, str] | None]:
    """The engine's (output, error)."""
    if spec.model.engine == "echo":
        fail = spec.params.get("fail")
        if isinstance(fail, str):
            return None, {"code": "model_error", "message": fail}
        return spec.input, None
    if spec.model.engine == "text":
        vector = embed_text(spec.input["text"])
    else:
        vector = await core.embed_media(spec.input["image"])
    if spec.mode == "index":
        return _index(core, spec, vector), None
    if spec.mode == "search":
        namespace = (spec.model.slug, DEFAULT_COLLECTION, spec.scope or "")
        top_k = spec.params.get("top_k", 10)
        return {"matches": core.vectors.search(namespace, vector, top_k)}, None
    return {"embedding": vector}, None


def _index(core: Core, spec: RunSpec, vector: list[float]) -> dict[str, Any]:
    item = Item(
        id=new_id("item"),
        model=spec.model.slug,
        collection=DEFAULT_COLLECTION,
        scope=spec.scope or "",
        vector=vector,
        media_ref=spec.input.get("image") if spec.model.engine == "image" else None,
        metadata=spec.params.get("metadata") or {},
    )
    core.vectors.add(item)
    return {"indexed": item.id, "dimensions": len(vector)}

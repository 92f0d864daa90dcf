"""``POST /api/runs``: validate, check access and funds, execute synchronously, charge.

Bad input is refused (400/422/404) before anything happens. The price is reserved while
the engine runs (so concurrent runs cannot overdraw the wallet) and charged only when the
response exists, together with its idempotency record (see ``_idempotency``); if the
engine or the response fails, the reservation is released and nothing is stored (an
``index`` run's item is written in the same transaction as its charge). A run
whose model reports a failure (``demo-echo`` with ``params.fail``) is charged: it executed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ._core import Core, credential, idempotent_post
from ._embed import embed_text
from ._errors import ApiError, json_response
from ._idempotency import Answer
from ._state import Usage
from ._validate import RunSpec, validate_run
from ._vectors import DEFAULT_COLLECTION, Item
from ._wire import credits, new_id, rfc3339


@dataclass(frozen=True)
class Outcome:
    """What the engine produced; ``item`` is indexed only with the charge, in one step."""

    output: Any
    error: dict[str, str] | None = None
    item: Item | None = None


async def create_run(request: web.Request) -> web.Response:
    """Handle ``POST /api/runs``."""
    return await idempotent_post(request, lambda core, body: _run(core, request, body))


async def _run(core: Core, request: web.Request, body: dict[str, Any]) -> Answer:
    spec = validate_run(body, core.catalogue, lambda ref: ref in core.state.media)
    model = spec.model
    if not model.allows(credential(request)):
        raise ApiError(403, f"this API key may not run model {model.slug!r}", field="model")
    if core.state.available < model.price:
        raise ApiError(
            402,
            f"wallet balance {core.state.available} is below the price {model.price} of "
            f"model {model.slug!r}; top up the workspace wallet",
        )
    run_id, created, started = new_id("run"), core.clock(), time.perf_counter()
    core.state.reserve(model.price)
    try:
        outcome = await _execute(core, spec)
        elapsed_ms = int((time.perf_counter() - started) * 1000)
        response = json_response(_body(run_id, spec, outcome, created, elapsed_ms))
    except BaseException:
        core.state.release(model.price)
        raise
    item = outcome.item
    effect = None if item is None else lambda: core.vectors.add(item)
    return Answer(response, Usage(run_id, model.slug, str(model.price), created), effect)


def _body(
    run_id: str, spec: RunSpec, outcome: Outcome, created: float, elapsed_ms: int
) -> dict[str, Any]:
    """The contract's ``Run`` object."""
    return {
        "id": run_id,
        "model": spec.model.slug,
        "mode": spec.mode,
        "scope": spec.scope,
        "status": "failed" if outcome.error else "succeeded",
        "output": outcome.output,
        "error": outcome.error,
        "usage": {"credits": credits(spec.model.price), "duration_ms": elapsed_ms},
        "created_at": rfc3339(created),
    }


async def _execute(core: Core, spec: RunSpec) -> Outcome:
    """Run the model's engine."""
    if spec.model.engine == "echo":
        fail = spec.params.get("fail")
        if isinstance(fail, str):
            return Outcome(None, {"code": "model_error", "message": fail})
        return Outcome(spec.input)
    if spec.model.engine == "text":
        vector = embed_text(spec.input["text"])
    else:
        vector = await core.embed_media(spec.input["image"])
    if spec.mode == "index":
        return _index(spec, vector)
    if spec.mode == "search":
        namespace = (spec.model.slug, DEFAULT_COLLECTION, spec.scope or "")
        top_k = int(spec.params.get("top_k", 10))  # 5.0 is a valid integer too
        return Outcome({"matches": core.vectors.search(namespace, vector, top_k)})
    return Outcome({"embedding": vector})


def _index(spec: RunSpec, vector: list[float]) -> Outcome:
    item = Item(
        id=new_id("item"),
        model=spec.model.slug,
        collection=DEFAULT_COLLECTION,
        scope=spec.scope or "",
        vector=vector,
        media_ref=spec.input.get("image") if spec.model.engine == "image" else None,
        metadata=spec.params.get("metadata") or {},
    )
    return Outcome({"indexed": item.id, "dimensions": len(vector)}, item=item)

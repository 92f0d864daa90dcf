"""The two aiohttp applications: the ``/api/*`` Gateway and the storage listener.

One middleware wraps every API request, in this order: count the route, draw its faults
(latency, 503/429, reset before), authenticate, rate-limit, run the handler, then apply
the after-faults (reset after executing, truncated JSON). Every answer gets an
``X-Request-Id``, and any error becomes the contract's envelope: an :class:`ApiError` or
aiohttp's own HTTP errors keep their 4xx status, and anything unexpected is logged with its
traceback and answered ``500 internal_error`` (never a bare text/plain 500). A client that
disconnects is not an error: one debug line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from ._billing import usage_summary, wallet
from ._body import answer_and_close
from ._complete import complete_upload
from ._core import CORE, CREDENTIAL, Core
from ._errors import ApiError
from ._faults import Decision
from ._marketplace import get_model, list_models
from ._multipart import put_part, refresh_parts, show_upload
from ._openapi import openapi
from ._runs import create_run
from ._storage import put_object
from ._uploads import init_upload
from ._wire import new_id

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("POST", "/api/runs", create_run),
    ("POST", "/api/media/upload/init", init_upload),
    ("POST", "/api/media/upload/complete", complete_upload),
    ("POST", "/api/media/upload/parts", refresh_parts),
    # upl_ ids only, so /init, /complete and /parts keep their own Allow headers.
    ("GET", "/api/media/upload/{upload_id:upl_[^/]+}", show_upload),
    ("GET", "/api/marketplace/models", list_models),
    ("GET", "/api/marketplace/models/{slug}", get_model),
    ("GET", "/api/billing/wallet", wallet),
    ("GET", "/api/billing/usage/summary", usage_summary),
    ("GET", "/api/openapi.json", openapi),
)
PUBLIC = frozenset({"/api/openapi.json"})  # paths served without credentials (any method)
REQUEST_ID = "X-Request-Id"
LOG = logging.getLogger("gateway_async.emulator")


def route_key(request: web.Request) -> str:
    """``"METHOD /path/{template}"`` of the matched route (the raw path when unmatched)."""
    resource = request.match_info.route.resource
    path = request.path if resource is None else resource.canonical
    return f"{request.method} {path}"


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Faults, auth, rate limit, envelope and request id around every API handler."""
    request_id = new_id("req")
    try:
        response = await _guarded(request.app[CORE], request, handler)
    except ApiError as exc:
        response = exc.response()
    except web.HTTPException as exc:
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        message = f"{request.method} {request.path}: {exc.reason}"
        response = ApiError(exc.status, message, headers=allow).response()
    except ConnectionError:  # the client went away: nothing failed, nobody reads an answer
        LOG.debug("client disconnected: %s %s (%s)", request.method, request.path, request_id)
        response = web.Response(status=400)
    except Exception:
        LOG.exception(
            "unexpected error answering %s %s (%s)", request.method, request.path, request_id
        )
        message = f"the emulator failed to answer this request; see its log for {request_id}"
        response = ApiError(500, message).response()
    response.headers[REQUEST_ID] = request_id
    if response.status == 408:  # the rest of a stalled body is not worth waiting for
        await answer_and_close(request, response)
    return response


async def _guarded(core: Core, request: web.Request, handler: Handler) -> web.StreamResponse:
    route = route_key(request)
    core.stats.requests_by_route[route] += 1
    decision = core.faults.decide(route)
    early = await _before(core, request, decision)
    if early is not None:
        return early
    if route.partition(" ")[2] not in PUBLIC:  # a wrong method there is 405, not 401
        request[CREDENTIAL] = who = core.auth.credential(request)
        _rate_limit(core, who)
    response = await handler(request)
    return _after(core, request, decision, response)


async def _before(core: Core, request: web.Request, decision: Decision) -> web.Response | None:
    faults = core.stats.faults_injected
    if decision.latency:
        faults["latency"] += 1
        await asyncio.sleep(decision.latency)
    if decision.status == 503:
        faults["503"] += 1
        raise ApiError(503, "injected fault: the service is temporarily unavailable")
    if decision.status == 429:
        faults["429"] += 1
        headers = {"Retry-After": str(decision.retry_after)}
        raise ApiError(429, "injected fault: too many requests", headers=headers)
    if decision.reset == "before":
        faults["reset"] += 1
        request.transport.abort()  # type: ignore[union-attr]
        return web.Response(status=500)
    return None


def _rate_limit(core: Core, who: str) -> None:
    if core.limiter is None:
        return
    retry_after = core.limiter.take(who)
    if retry_after is not None:
        core.stats.rate_limited += 1
        raise ApiError(
            429,
            f"rate limit exceeded for this API key; retry after {retry_after} seconds",
            headers={"Retry-After": str(retry_after)},
        )


def _after(
    core: Core, request: web.Request, decision: Decision, response: web.StreamResponse
) -> web.StreamResponse:
    if decision.reset == "after":
        core.stats.faults_injected["reset"] += 1
        request.transport.abort()  # type: ignore[union-attr]
    elif decision.truncate and isinstance(response, web.Response) and response.status < 300:
        body = response.body
        if isinstance(body, bytes):
            core.stats.faults_injected["truncated_json"] += 1
            response.body = body[: len(body) // 2]
    return response


def build_api_app(core: Core) -> web.Application:
    """The Gateway application."""
    app = web.Application(middlewares=[api_middleware])
    app[CORE] = core
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    return app


def build_storage_app(core: Core) -> web.Application:
    """The object-storage application."""
    app = web.Application()
    app[CORE] = core
    app.router.add_put("/storage/{upload_id}", put_object)
    app.router.add_put("/storage/{upload_id}/parts/{part_number}", put_part)
    return app

"""``GET /api/billing/wallet`` and ``GET /api/billing/usage/summary``."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from aiohttp import web

from ._core import Core, core_of
from ._errors import invalid, json_response
from ._wire import credits, parse_rfc3339, rfc3339

DEFAULT_WINDOW = 30 * 24 * 3600.0


async def wallet(request: web.Request) -> web.Response:
    """The caller's workspace wallet."""
    core = core_of(request)
    state = core.state
    return json_response(
        {
            "workspace_id": core.name,
            "balance": credits(state.balance),
            "currency": "credits",
            "updated_at": rfc3339(state.updated_at),
        }
    )


def _time(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    parsed = parse_rfc3339(raw)
    if parsed is None:
        raise invalid(
            name,
            f"{name} must be an RFC 3339 date-time with an offset, e.g. "
            f"2026-11-24T12:00:00Z; got {raw!r}",
        )
    return parsed


def _window(core: Core, request: web.Request) -> tuple[float, float]:
    end = _time(request, "end", core.clock())
    start = _time(request, "start", end - DEFAULT_WINDOW)
    return start, end  # start after end is an empty window: zero runs, not an error


async def usage_summary(request: web.Request) -> web.Response:
    """Runs and credits per model within ``[start, end]``."""
    core = core_of(request)
    start, end = _window(core, request)
    runs: defaultdict[str, int] = defaultdict(int)
    spent: defaultdict[str, Decimal] = defaultdict(Decimal)
    for usage in core.state.usage:
        if start <= usage.at <= end:
            runs[usage.model] += 1
            spent[usage.model] += Decimal(usage.credits)
    by_model = [
        {"model": model, "runs": runs[model], "credits": credits(spent[model])}
        for model in sorted(runs)
    ]
    return json_response(
        {
            "start": rfc3339(start),
            "end": rfc3339(end),
            "total_runs": sum(runs.values()),
            "total_credits": credits(sum(spent.values(), Decimal())),
            "by_model": by_model,
        }
    )

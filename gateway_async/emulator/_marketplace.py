"""``GET /api/marketplace/models`` (paginated, searchable) and ``/models/{slug}``."""

from __future__ import annotations

import re

from aiohttp import web

from ._core import CORE
from ._errors import ApiError, invalid, json_response
from ._models import decode_cursor, encode_cursor

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
_LIMIT = re.compile(r"[0-9]{1,3}", re.ASCII)


def _limit(raw: str | None) -> int:
    """1..100 in plain ASCII digits (``str.isdigit`` also admits ``"²"``, which int() refuses)."""
    if raw is None:
        return DEFAULT_LIMIT
    if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise invalid("limit", f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw!r}")
    return int(raw)


async def list_models(request: web.Request) -> web.Response:
    """One page of models; ``next_cursor`` is null on the last page."""
    catalogue = request.app[CORE].catalogue
    query = request.query
    limit = _limit(query.get("limit"))
    cursor = query.get("cursor")
    offset = 0 if cursor is None else decode_cursor(cursor)
    models, next_offset = catalogue.page(query.get("q", ""), offset, limit)
    next_cursor = None if next_offset is None else encode_cursor(next_offset)
    return json_response({"data": [m.public() for m in models], "next_cursor": next_cursor})


async def get_model(request: web.Request) -> web.Response:
    """One model by slug (the slug is a single, already-decoded path segment)."""
    slug = request.match_info["slug"]
    model = request.app[CORE].catalogue.get(slug)
    if model is None:
        raise ApiError(404, f"no published model {slug!r}", field="slug")
    return json_response(model.public())

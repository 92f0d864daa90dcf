"""``gw.marketplace``: published models, listed page by page or loaded one by slug."""

from __future__ import annotations

from collections.abc import AsyncIterator

from .._config import NOT_GIVEN, NotGiven
from .._convert import structure
from .._errors import APIResponseValidationError, InvalidRequestError
from .._transport import Transport, segment
from ..models import MarketplaceModel
from ._base import CallTimeout, Resource, traced, traced_pages

__all__ = ["Marketplace"]


class Marketplace(Resource):
    """Browse the marketplace."""

    __slots__ = ("_models",)

    def __init__(self, transport: Transport) -> None:
        super().__init__(transport)
        self._models: dict[str, MarketplaceModel] = {}

    async def cached_model(self, slug: str) -> MarketplaceModel:
        """``get_model(slug)`` once per client: what the SDK checks inputs against before
        spending money (``gw.ingest``, a run whose input is not an object). Only answers
        are kept (a failure is asked again), and no task is left behind if the caller is
        cancelled; two first calls at the same moment may both ask."""
        model = self._models.get(slug)
        if model is None:
            model = self._models[slug] = await self.get_model(slug)
        return model

    @traced_pages("gateway.marketplace.list_models")
    async def list_models(
        self,
        q: str | None = None,
        *,
        page_size: int = 50,
        timeout: CallTimeout | NotGiven = NOT_GIVEN,
    ) -> AsyncIterator[MarketplaceModel]:
        """Every matching model, following ``next_cursor`` page after page."""
        if (
            isinstance(page_size, bool)
            or not isinstance(page_size, int)
            or not 1 <= page_size <= 100
        ):
            raise InvalidRequestError(
                "page_size: must be an integer from 1 to 100", field="page_size"
            )
        params = {"limit": str(page_size)}
        if q:
            params["q"] = q
        seen: set[str] = set()  # a server repeating a cursor would loop forever
        while True:
            reply = await self._transport.request(
                "GET", "/api/marketplace/models", params=params, timeout=timeout
            )
            page = reply.data
            items = page.get("data") if isinstance(page, dict) else None
            cursor = page.get("next_cursor") if isinstance(page, dict) else None
            if not isinstance(items, list) or not (cursor is None or isinstance(cursor, str)):
                raise APIResponseValidationError(
                    "malformed model page: expected {'data': [...], 'next_cursor': str|null}",
                    request_id=reply.request_id,
                )
            for index, item in enumerate(items):
                at = f"data[{index}]"
                yield structure(item, MarketplaceModel, request_id=reply.request_id, at=at)
            if not cursor:
                return
            if cursor in seen:
                raise APIResponseValidationError(
                    f"cursor loop: the server sent next_cursor {cursor[:40]!r} a second time "
                    "in one listing; stopping instead of listing the same pages forever",
                    request_id=reply.request_id,
                )
            seen.add(cursor)
            params = {**params, "cursor": cursor}

    @traced("gateway.marketplace.get_model")
    async def get_model(
        self, slug: str, *, timeout: CallTimeout | NotGiven = NOT_GIVEN
    ) -> MarketplaceModel:
        """One model by slug. The slug is one path segment, whatever characters it holds."""
        path = f"/api/marketplace/models/{segment(slug, field='slug')}"
        reply = await self._transport.request("GET", path, timeout=timeout)
        return structure(reply.data, MarketplaceModel, request_id=reply.request_id)

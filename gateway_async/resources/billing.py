"""``gw.billing``: the workspace wallet and usage summary."""

from __future__ import annotations

from datetime import datetime

from .._config import NOT_GIVEN, NotGiven
from .._convert import rfc3339, structure
from .._errors import InvalidRequestError
from .._validate import OUT_OF_UTC, fits_utc
from ..models import UsageSummary, Wallet
from ._base import CallTimeout, Resource, traced

__all__ = ["Billing"]


def _rfc3339(value: datetime, field: str) -> str:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidRequestError(
            f"{field}: pass an aware datetime, e.g. datetime.now(UTC)", field=field
        )
    if not fits_utc(value):
        raise InvalidRequestError(f"{field}: {OUT_OF_UTC}", field=field)
    return rfc3339(value)


class Billing(Resource):
    """Wallet balance and usage, in exact ``Decimal`` credits."""

    __slots__ = ()

    @traced("gateway.billing.wallet")
    async def wallet(self, *, timeout: CallTimeout | NotGiven = NOT_GIVEN) -> Wallet:
        reply = await self._transport.request("GET", "/api/billing/wallet", timeout=timeout)
        return structure(reply.data, Wallet, request_id=reply.request_id)

    @traced("gateway.billing.usage_summary")
    async def usage_summary(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        timeout: CallTimeout | NotGiven = NOT_GIVEN,
    ) -> UsageSummary:
        """Runs and credits between ``start`` and ``end`` (the Gateway's defaults when None)."""
        params: dict[str, str] = {}
        if start is not None:
            params["start"] = _rfc3339(start, "start")
        if end is not None:
            params["end"] = _rfc3339(end, "end")
        if start is not None and end is not None and end < start:
            raise InvalidRequestError("end: must not be before start", field="end")
        reply = await self._transport.request(
            "GET", "/api/billing/usage/summary", params=params or None, timeout=timeout
        )
        return structure(reply.data, UsageSummary, request_id=reply.request_id)

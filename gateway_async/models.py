"""The wire types of the Gateway contract, as frozen, slotted, keyword-only attrs classes.

Responses are built from JSON by the one converter in ``_convert``; requests are checked
by the pure rules in ``_validate`` when they are built, so a bad request fails at the line
that made it, before any byte is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from ._validate import validate_run_request

__all__ = [
    "MarketplaceModel",
    "MediaRef",
    "ModelUsage",
    "Run",
    "RunError",
    "RunRequest",
    "RunUsage",
    "UploadTicket",
    "UsageSummary",
    "Wallet",
]


@attrs.frozen(kw_only=True)
class MediaRef:
    """An uploaded media object. Put it anywhere in a run's ``input``; it is sent as its string."""

    media_ref: str
    size: int
    content_type: str
    sha256: str | None = None
    filename: str | None = None

    def __str__(self) -> str:
        return self.media_ref


@attrs.frozen(kw_only=True)
class RunRequest:
    """One ``POST /api/runs`` body. Validated when built (see ``_validate``)."""

    model: str
    input: Any
    mode: str = "execute"
    scope: str | None = None
    params: Mapping[str, Any] | None = None
    options: Mapping[str, Any] | None = None
    idempotency_key: str | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        validate_run_request(
            model=self.model,
            input=self.input,
            mode=self.mode,
            scope=self.scope,
            params=self.params,
            options=self.options,
            idempotency_key=self.idempotency_key,
        )

    @classmethod
    def from_dict(
        cls, body: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> RunRequest:
        """Build from a raw body dict, refusing fields the contract forbids at the top level."""
        from ._validate import check_top_level_fields

        check_top_level_fields(body)
        return cls(**dict(body), idempotency_key=idempotency_key)

    def to_body(self) -> dict[str, Any]:
        """The JSON body, without ``None`` fields or the idempotency key (it is a header)."""
        body: dict[str, Any] = {"model": self.model, "mode": self.mode, "input": self.input}
        if self.scope is not None:
            body["scope"] = self.scope
        if self.params is not None:
            body["params"] = self.params
        if self.options is not None:
            body["options"] = self.options
        return body


@attrs.frozen(kw_only=True)
class RunUsage:
    """What a run cost: ``credits`` (exact Decimal) and wall time on the Gateway."""

    credits: Decimal
    duration_ms: int


@attrs.frozen(kw_only=True)
class RunError:
    """Why a run has ``status == "failed"``."""

    code: str
    message: str


@attrs.frozen(kw_only=True)
class Run:
    """The result of ``POST /api/runs`` (runs execute synchronously)."""

    id: str
    model: str
    mode: str
    status: str
    output: Any
    usage: RunUsage
    created_at: datetime
    scope: str | None = None
    error: RunError | None = None
    # Not on the wire: True when the Gateway answered from its record of an earlier call
    # with the same Idempotency-Key (header ``Idempotent-Replayed``): nothing executed or
    # was charged by this call. A replay answering a retry after an attempt whose outcome
    # was unknown is False: that attempt executed, within this call. Not part of equality.
    replayed: bool = attrs.field(default=False, eq=False)

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


@attrs.frozen(kw_only=True)
class MarketplaceModel:
    """A published model as the marketplace lists it."""

    slug: str
    name: str
    description: str
    modes: tuple[str, ...]
    vector_modes: tuple[str, ...]
    input_schema: dict[str, Any]
    params_schema: dict[str, Any]
    price_per_run: Decimal
    release: str


@attrs.frozen(kw_only=True)
class Wallet:
    """The workspace wallet. ``balance`` is exact: money is never a float here."""

    workspace_id: str
    balance: Decimal
    currency: str
    updated_at: datetime


@attrs.frozen(kw_only=True)
class ModelUsage:
    """One model's share of a usage summary."""

    model: str
    runs: int
    credits: Decimal


@attrs.frozen(kw_only=True)
class UsageSummary:
    """Runs and credits of the workspace over ``[start, end]``."""

    start: datetime
    end: datetime
    total_runs: int
    total_credits: Decimal
    by_model: tuple[ModelUsage, ...]


@attrs.frozen(kw_only=True)
class UploadTicket:
    """The answer of ``upload/init``: where and how to PUT the bytes."""

    upload_id: str
    upload_url: str = attrs.field(repr=False)  # pre-signed: a bearer secret until it expires
    method: str
    headers: dict[str, str]
    expires_at: datetime

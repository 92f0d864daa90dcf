"""What every resource namespace shares: the transport, and the per-call options."""

from __future__ import annotations

from typing import TypeAlias

from .._config import Timeouts
from .._transport import Transport

__all__ = ["CallTimeout", "Resource"]

CallTimeout: TypeAlias = float | Timeouts | None


class Resource:
    """A namespace of calls sharing one transport."""

    __slots__ = ("_transport",)

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

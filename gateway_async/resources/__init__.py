"""Resource namespaces: ``gw.runs``, ``gw.marketplace``, ``gw.billing``, ``gw.media``.

Each is thin: validate, send through the transport, structure the answer. ``Media`` is
imported on first use: it pulls in the upload machinery, which a client that only runs
models never needs.
"""

from typing import TYPE_CHECKING, Any

from .billing import Billing
from .marketplace import Marketplace
from .runs import Runs

if TYPE_CHECKING:
    from .media import Media


def __getattr__(name: str) -> Any:
    if name == "Media":
        from .media import Media

        return Media
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Billing", "Marketplace", "Media", "Runs"]

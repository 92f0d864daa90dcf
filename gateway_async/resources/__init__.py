"""Resource namespaces: ``gw.runs``, ``gw.marketplace``, ``gw.billing``, ``gw.media``.

Each is thin: validate, send through the transport, structure the answer.
"""

from .billing import Billing
from .marketplace import Marketplace
from .media import Media
from .runs import Runs

__all__ = ["Billing", "Marketplace", "Media", "Runs"]

"""The ``gateway-async`` command line (imported lazily: never by ``import gateway_async``)."""

from .main import main

__all__ = ["main"]

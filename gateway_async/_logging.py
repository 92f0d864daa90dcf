"""The ``gateway_async`` logger, with a filter that masks every live secret in its records.

The SDK never formats a secret into a log line; the filter is the second belt, for values a
caller logs through our logger (a repr, a URL) that could carry one.
"""

from __future__ import annotations

import logging
import threading

__all__ = ["logger", "register_secret", "unregister_secret"]

logger = logging.getLogger("gateway_async")
MASK = "***"


class _SecretFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: dict[str, int] = {}

    def add(self, secret: str) -> None:
        with self._lock:
            self._secrets[secret] = self._secrets.get(secret, 0) + 1

    def discard(self, secret: str) -> None:
        with self._lock:
            left = self._secrets.get(secret, 0) - 1
            if left > 0:
                self._secrets[secret] = left
            else:
                self._secrets.pop(secret, None)

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = tuple(self._secrets)
        if not secrets:
            return True
        message = record.getMessage()
        masked = message
        for secret in secrets:
            masked = masked.replace(secret, MASK)
        if masked != message:
            record.msg, record.args = masked, None
        return True


_filter = _SecretFilter()
logger.addFilter(_filter)


def register_secret(secret: str) -> None:
    """Mask ``secret`` in every record of the ``gateway_async`` logger from now on."""
    _filter.add(secret)


def unregister_secret(secret: str) -> None:
    """Stop masking ``secret`` once the last client holding it closed."""
    _filter.discard(secret)

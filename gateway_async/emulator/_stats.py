"""Live counters a test reads to prove what the emulator did (or did not do)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal


@dataclass
class EmulatorStats:
    """Counters since this emulator process started (index sizes include restored state).

    ``executions_by_idempotency_key`` counts model executions per ``Idempotency-Key``
    header, so a test can assert that retries of one call executed exactly once.
    ``bytes_received`` counts body bytes storage read from PUTs (whole uploads and parts,
    failed attempts included). ``credential_leaks`` counts storage PUTs that carried
    ``X-API-Key`` or ``Authorization``; a correct client keeps it at 0.
    ``uploads_deduplicated`` counts inits answered with content already held (version 3).
    """

    requests_by_route: Counter[str] = field(default_factory=Counter)
    executions: int = 0
    executions_by_idempotency_key: Counter[str] = field(default_factory=Counter)
    charges: int = 0
    charged_total: Decimal = Decimal("0.0000")
    replays: int = 0
    uploads_initiated: int = 0
    uploads_completed: int = 0
    uploads_deduplicated: int = 0
    puts: int = 0
    bytes_received: int = 0
    credential_leaks: int = 0
    rate_limited: int = 0
    faults_injected: Counter[str] = field(default_factory=Counter)
    index_sizes: Counter[tuple[str, str]] = field(default_factory=Counter)

    def index_size(self, model: str, scope: str) -> int:
        """How many items are indexed for ``model`` under ``scope``."""
        return self.index_sizes[(model, scope)]

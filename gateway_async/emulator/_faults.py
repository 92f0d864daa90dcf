"""Seeded fault injection, configured per route (``"POST /api/runs"``, ``"PUT /storage"``)
with ``"*"`` as the fallback.

Each request on a route with a spec draws the same number of random values from one
``random.Random(seed)``, in arrival order, so a sequential test sees the same faults on
every run. What a fault does:

* ``latency=(lo, hi)``: sleep ``uniform(lo, hi)`` seconds first;
* ``error_503`` / ``error_429``: answer before executing (429 with ``Retry-After``);
* ``reset``: abort the connection, before or after executing (a coin toss); on the storage
  PUT, after reading part of the body, storing nothing;
* ``truncated_json``: execute, then send a 2xx whose JSON body is cut in half;
* ``lost_reply``: on a ``POST`` (upload init, complete, runs) only: execute, then abort the
  connection: the work is done and the client never hears of it ("executed, reply lost").
  Its draw is taken only when ``lost_reply`` is set, so older seeds keep their faults.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FaultSpec:
    """Probabilities (0..1) of each fault on one route."""

    error_503: float = 0.0
    error_429: float = 0.0
    retry_after: int = 0
    latency: tuple[float, float] = (0.0, 0.0)
    reset: float = 0.0
    truncated_json: float = 0.0
    lost_reply: float = 0.0


_KEYS = {
    "503": "error_503",
    "429": "error_429",
    "reset": "reset",
    "truncated": "truncated_json",
    "lost": "lost_reply",
}


@dataclass(frozen=True)
class Faults:
    """A seed and the fault spec of each route key (``"*"`` matches every route)."""

    seed: int = 0
    routes: Mapping[str, FaultSpec] = field(default_factory=dict)

    def spec_for(self, route: str) -> FaultSpec | None:
        """The spec of ``route``, else the ``"*"`` spec, else None."""
        return self.routes.get(route, self.routes.get("*"))

    @classmethod
    def parse(cls, text: str) -> Faults:
        """Parse ``"503=0.1,429=0.05,reset=0.02,truncated=0.01,lost=0.02,latency=0-0.02,
        seed=7,retry_after=0"`` into faults for every route (ValueError on bad syntax)."""
        seed, values, latency, retry_after = 0, dict.fromkeys(_KEYS.values(), 0.0), (0.0, 0.0), 0
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            try:
                if not sep:
                    raise ValueError(part)
                if name == "seed":
                    seed = int(value)
                elif name == "retry_after":
                    retry_after = int(value)
                elif name == "latency":
                    low, _, high = value.partition("-")
                    latency = (float(low), float(high or low))
                elif name in _KEYS and 0.0 <= float(value) <= 1.0:
                    values[_KEYS[name]] = float(value)
                else:
                    raise ValueError(part)
            except ValueError:
                raise ValueError(
                    f"bad fault {part!r}: expected 503=P, 429=P, reset=P, truncated=P, lost=P "
                    "(P in 0..1), latency=LO-HI, retry_after=N or seed=N"
                ) from None
        spec = FaultSpec(latency=latency, retry_after=retry_after, **values)
        return cls(seed=seed, routes={"*": spec})


@dataclass(frozen=True)
class Decision:
    """What to do to one request."""

    latency: float = 0.0
    status: int | None = None
    retry_after: int = 0
    reset: str | None = None  # "before" or "after"
    truncate: bool = False


class FaultInjector:
    """Draws one :class:`Decision` per request from the seeded generator."""

    def __init__(self, faults: Faults | None) -> None:
        self.configure(faults)

    def configure(self, faults: Faults | None) -> None:
        """Replace the faults and restart the generator from their seed."""
        self._faults = faults or Faults()
        self._rng = random.Random(self._faults.seed)

    def decide(self, route: str) -> Decision:
        """Draw the faults of one request on ``route``."""
        spec = self._faults.spec_for(route)
        if spec is None:
            return Decision()
        rng = self._rng
        draws = [rng.random() for _ in range(5)]
        latency = rng.uniform(*spec.latency) if spec.latency[1] > 0 else 0.0
        status = 503 if draws[0] < spec.error_503 else 429 if draws[1] < spec.error_429 else None
        reset = ("before" if draws[3] < 0.5 else "after") if draws[2] < spec.reset else None
        if spec.lost_reply and rng.random() < spec.lost_reply and route.startswith("POST "):
            reset = "after"  # the middleware executes, then aborts the connection
        truncate = draws[4] < spec.truncated_json
        return Decision(latency, status, spec.retry_after, reset, truncate)

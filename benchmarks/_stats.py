"""Small statistics and measurement helpers shared by the benchmark scripts."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import attrs


@attrs.frozen
class Sample:
    """One timed round of one client: wall seconds, client CPU seconds, operations."""

    wall: float
    cpu: float
    ops: int

    @property
    def per_second(self) -> float:
        return self.ops / self.wall

    @property
    def cpu_us_per_op(self) -> float:
        return self.cpu / self.ops * 1e6


def measure(fn: Callable[[], Any], ops: int) -> Sample:
    """Run ``fn`` once and record wall time and this process's user+sys CPU time."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    fn()
    return Sample(time.perf_counter() - wall0, time.process_time() - cpu0, ops)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt_range(values: list[float], digits: int = 0) -> str:
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"

"""Small statistics and measurement helpers shared by the benchmark scripts."""

from __future__ import annotations

import multiprocessing
import os
import resource
import statistics
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import attrs


@attrs.frozen
class Sample:
    """One timed round of one client: wall seconds, client CPU seconds, operations."""

    wall: float
    cpu: float
    ops: int
    rss_growth_mib: float = 0.0  # peak RSS over the RSS at the start (measure_forked only)

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


def status_mib(field: str) -> float:
    """A size field of /proc/self/status (VmRSS: now, VmHWM: the peak) in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def _forked(fn: Callable[[], Any], ops: int, conn: Connection) -> None:
    reset_peak_rss()
    start = status_mib("VmRSS")
    sample = measure(fn, ops)
    conn.send(attrs.evolve(sample, rss_growth_mib=status_mib("VmHWM") - start))


def measure_forked(fn: Callable[[], Any], ops: int) -> Sample:
    """``measure`` in a forked child, adding how far its RSS rose above where it started,
    so every client's memory is measured from the same baseline."""
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("fork").Process(target=_forked, args=(fn, ops, theirs))
    child.start()
    try:
        sample: Sample = ours.recv()
    finally:
        child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"benchmark child failed with exit code {child.exitcode}")
    return sample


def children_cpu() -> float:
    """User+sys CPU seconds of this process's children that have been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def child_env() -> dict[str, str]:
    """This environment for a measured child Python: hashing fixed, bytecode caching on (the
    shells here may set PYTHONDONTWRITEBYTECODE, and then every child compiles every module
    it imports)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONHASHSEED": "0"}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired_cpu(ours: list[Sample], base: list[Sample]) -> tuple[float, str]:
    """CPU of ``ours`` over ``base``, the median of the rounds' ratios (round i of each ran
    back to back), and the medians per operation for a detail: "X vs Y µs CPU/run ..."."""
    ratio = median([a.cpu / b.cpu for a, b in zip(ours, base, strict=True)])
    ours_us, base_us = (median([r.cpu_us_per_op for r in rows]) for rows in (ours, base))
    rounds = f"paired median of {len(ours)} rounds"
    return ratio, f"{ours_us:.0f} vs {base_us:.0f} µs CPU/run ({rounds})"


def fmt_range(values: list[float], digits: int = 0) -> str:
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def med_range(values: list[float], spec: str = ",.0f") -> str:
    """``median (min-max)``, the cell every table uses."""
    return f"{median(values):{spec}} ({fmt_range(values)})"

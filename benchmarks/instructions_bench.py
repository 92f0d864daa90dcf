"""Instruction counts (valgrind callgrind) of the client process: the deterministic figure
for ratios that CPU time on this shared 2-core VM cannot resolve to a few percent.

Each count is one fresh process under ``valgrind --tool=callgrind`` (PYTHONHASHSEED=0,
bytecode cached beforehand), its total from callgrind's "Collected : N"; the cheap server
runs in another process, not under valgrind. Three ratios:

1. ``import gateway_async`` / ``import aiohttp``: the whole process each (target <= 1.10).
2. Instructions per ``runs.create``, SDK (``create_many`` at concurrency 32, as
   ``runs_bench``) / the raw aiohttp loop of ``runs_bench``: per run = (I(large) -
   I(small)) / (large - small), which leaves out start-up and imports (target <= 1.05).
3. Per run with the OpenTelemetry API installed and no SDK (the default) /
   ``telemetry=False`` (target <= +3%). The default client is the SDK of ratio 2.

Without valgrind on PATH it says so and counts nothing.

    python -m benchmarks.instructions_bench [--runs 200,1000] [--only import,runs,otel]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks import _ratios
from benchmarks._server import cheap_server
from benchmarks._stats import child_env

ROOT = Path(__file__).parent.parent
CALLGRIND = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
COLLECTED = re.compile(r"Collected : (\d+)")
CONCURRENCY = 32


def python(args: list[str], valgrind: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [*(CALLGRIND if valgrind else []), sys.executable, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=child_env())
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done


def instructions(args: list[str]) -> int:
    """Instructions executed by ``python ARGS`` in a fresh process under callgrind."""
    match = COLLECTED.search(python(args, valgrind=True).stderr)
    if not match:
        raise RuntimeError(f"no 'Collected :' in callgrind's output for {args}")
    return int(match.group(1))


def child(name: str, url: str, n: int) -> None:
    """``--child``: one client doing ``n`` runs, the function ``runs_bench`` times."""
    from benchmarks import otel_bench, runs_bench

    clients: dict[str, Callable[[str, int, int], None]] = {
        "sdk": runs_bench.sdk,
        "raw": runs_bench.raw_aiohttp,
        "off": otel_bench.off,
    }
    clients[name](url, n, CONCURRENCY)


def counted(jobs: list[list[str]]) -> list[int]:
    """``instructions`` of each job, as many at once as there are cores: a count, unlike a
    time, hardly moves with the load."""
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return list(pool.map(instructions, jobs))


def per_run(url: str, names: list[str], small: int, large: int) -> dict[str, float]:
    """Instructions per run of each client: (I(large) - I(small)) / (large - small)."""
    child = ["-m", "benchmarks.instructions_bench", "--child"]
    got = counted([[*child, name, url, str(n)] for name in names for n in (small, large)])
    return {name: (got[2 * i + 1] - got[2 * i]) / (large - small) for i, name in enumerate(names)}


Rows = list[tuple[str, str, str]]  # what, instructions, per


def import_counts() -> tuple[Rows, list[dict[str, Any]]]:
    code = {mod: ["-c", f"import {mod}"] for mod in ("gateway_async", "aiohttp")}
    for args in code.values():
        python(args)  # writes the .pyc files the counted runs read
    sdk, raw = counted(list(code.values()))
    record = _ratios.emit(
        f"{_ratios.IMPORT}, instructions",
        sdk / raw,
        "<= 1.10",
        f"{sdk / 1e6:,.0f} M vs {raw / 1e6:,.0f} M instructions (whole process)",
    )
    counts = zip(code, (sdk, raw), strict=True)
    rows = [(f"`import {mod}`", f"{n / 1e6:,.1f} M", "process") for mod, n in counts]
    return rows, [record]


def run_counts(sizes: tuple[int, int], only: set[str]) -> tuple[Rows, list[dict[str, Any]]]:
    wanted = {"sdk": "runs" in only or "otel" in only, "raw": "runs" in only, "off": "otel" in only}
    with cheap_server() as url:
        python(["-m", "benchmarks.instructions_bench", "--child", "sdk", url, "10"])  # .pyc
        per = per_run(url, [name for name, yes in wanted.items() if yes], *sizes)
    rows = [(LABELS[name], f"{count / 1e3:,.1f} k", "run") for name, count in per.items()]
    return rows, run_records(per)


def run_records(per: dict[str, float]) -> list[dict[str, Any]]:
    """The SDK over the raw loop (issue item 2), and the default over telemetry=False (6)."""
    records = []
    if "raw" in per:
        ratio, detail = per["sdk"] / per["raw"], _versus(per["sdk"], per["raw"])
        records.append(_ratios.emit(f"{_ratios.RUNS}, instructions", ratio, "<= 1.05", detail))
    if "off" in per:
        extra, detail = per["sdk"] / per["off"] - 1, _versus(per["sdk"], per["off"])
        metric = f"{_ratios.OTEL}, instructions"
        records.append(_ratios.emit(metric, extra, "<= +3%", detail, measured=f"{extra:+.1%}"))
    return records


def _versus(ours: float, theirs: float) -> str:
    return f"{ours / 1e3:,.1f} k vs {theirs / 1e3:,.1f} k instructions/run"


LABELS = {
    "sdk": "gateway_async `runs.create_many` (default: OTel API, no SDK)",
    "raw": "raw aiohttp loop",
    "off": "gateway_async, `telemetry=False`",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", default="200,1000", help="the two batch sizes, SMALL,LARGE")
    parser.add_argument("--only", default="import,runs,otel")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    print("## Instruction counts (valgrind callgrind, client process)\n")
    if not shutil.which("valgrind"):
        print("valgrind is not on PATH: no instruction counts.")
        return
    small, large = (int(n) for n in args.runs.split(","))
    only = set(args.only.split(","))
    rows, records = import_counts() if "import" in only else ([], [])
    if only & {"runs", "otel"}:
        more_rows, more = run_counts((small, large), only)
        rows, records = rows + more_rows, records + more
    print(
        f"A fresh process each ({os.cpu_count()} at once), PYTHONHASHSEED=0, .pyc files written "
        "first (PYTHONDONTWRITEBYTECODE unset in the children); per run = "
        f"(I({large:,} runs) - I({small:,} runs)) / {large - small:,}, concurrency "
        f"{CONCURRENCY}, against the cheap server.\n"
    )
    print("| what | instructions | per |\n|---|---|---|")
    print("\n".join(f"| {what} | {count} | {per} |" for what, count, per in rows))
    print()
    print("\n".join(_ratios.line(r) for r in records))


if __name__ == "__main__":
    main()

"""Import time of ``gateway_async`` and time to the first request, each in a fresh process;
and the CPU of ``import gateway_async`` against ``import aiohttp`` in paired processes.

Bytecode is cached first (one import of each before the clock), and the children run with
PYTHONDONTWRITEBYTECODE unset and PYTHONHASHSEED=0. CPU is user+sys of the child process,
the whole process (interpreter start-up included), as ``time python -c ...`` reports it.

python -m benchmarks.startup_bench [--rounds 7] [--pairs 20]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from benchmarks import _ratios
from benchmarks._server import cheap_server
from benchmarks._stats import child_env, children_cpu, fmt_range, median

IMPORT = "import time; t=time.perf_counter(); import {mod}; print(time.perf_counter()-t)"
FIRST = """
import time
t = time.perf_counter()
import asyncio
from gateway_async import Gateway
async def main():
    async with Gateway(api_key="k", base_url="{url}") as gw:
        await gw.runs.create(model="demo-echo", input={{"i": 1}})
asyncio.run(main())
print(time.perf_counter() - t)
"""
MODULES = ("gateway_async", "aiohttp")


def _python(code: str) -> str:
    cmd = [sys.executable, "-c", code]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, env=child_env()).stdout


def _seconds(code: str) -> float:
    return float(_python(code).strip().splitlines()[-1])


def _cpu(code: str) -> float:
    """User+sys CPU seconds of one fresh process running ``code``."""
    before = children_cpu()
    _python(code)
    return children_cpu() - before


def import_cpu(pairs: int) -> list[str]:
    """``pairs`` paired processes, the order alternating; the median of the paired ratios."""
    cpu: dict[str, list[float]] = {mod: [] for mod in MODULES}
    for i in range(pairs):
        for mod in MODULES[::-1] if i % 2 else MODULES:
            cpu[mod].append(_cpu(f"import {mod}"))
    ratio = median([a / b for a, b in zip(*cpu.values(), strict=True)])
    sdk, raw = (median(values) * 1000 for values in cpu.values())
    record = _ratios.emit(
        f"{_ratios.IMPORT}, process CPU",
        ratio,
        "<= 1.10",
        f"{sdk:.0f} vs {raw:.0f} ms CPU (medians of {pairs} paired processes)",
    )
    lines = [f"\n### Process CPU of an import ({pairs} paired fresh processes)\n"]
    lines.append("| what | CPU ms (median) | min-max |\n|---|---|---|")
    for mod, values in cpu.items():
        ms = [v * 1000 for v in values]
        lines.append(f"| python -c 'import {mod}' | {median(ms):.1f} | {fmt_range(ms, 1)} |")
    return [*lines, "", _ratios.line(record)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--pairs", type=int, default=20, help="paired processes for CPU")
    args = parser.parse_args()
    for mod in MODULES:
        _python(f"import {mod}")  # writes the .pyc files every measured process reads
    rows: dict[str, list[float]] = {f"import {mod}": [] for mod in MODULES}
    rows["import + first run (new process)"] = []
    with cheap_server() as url:
        for _ in range(args.rounds):
            for mod in MODULES:
                rows[f"import {mod}"].append(_seconds(IMPORT.format(mod=mod)))
            rows["import + first run (new process)"].append(_seconds(FIRST.format(url=url)))
    print(f"## Start-up ({args.rounds} fresh processes each)\n")
    print("Bytecode cached first; children run with PYTHONDONTWRITEBYTECODE unset.\n")
    print("| what | ms (median) | min-max |\n|---|---|---|")
    for name, values in rows.items():
        ms = [v * 1000 for v in values]
        print(f"| {name} | {median(ms):.1f} | {fmt_range(ms, 1)} |")
    print("\n".join(import_cpu(args.pairs)))


if __name__ == "__main__":
    main()

"""Import time of ``gateway_async`` and time to the first request, each in a fresh process.

python -m benchmarks.startup_bench [--rounds 7]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from benchmarks._server import cheap_server
from benchmarks._stats import fmt_range, median

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


def _seconds(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rows: dict[str, list[float]] = {"import gateway_async": [], "import aiohttp": []}
    rows["import + first run (new process)"] = []
    with cheap_server() as url:
        for _ in range(args.rounds):
            rows["import gateway_async"].append(_seconds(IMPORT.format(mod="gateway_async")))
            rows["import aiohttp"].append(_seconds(IMPORT.format(mod="aiohttp")))
            rows["import + first run (new process)"].append(_seconds(FIRST.format(url=url)))
    print(f"## Start-up ({args.rounds} fresh processes each)\n")
    print("| what | ms (median) | min-max |\n|---|---|---|")
    for name, values in rows.items():
        ms = [v * 1000 for v in values]
        print(f"| {name} | {median(ms):.1f} | {fmt_range(ms, 1)} |")


if __name__ == "__main__":
    main()

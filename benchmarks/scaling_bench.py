"""How client CPU per run and peak memory change with the batch size and the concurrency.

Each point runs in a fresh process (so peak RSS is the point's own) against the same cheap
loopback server.

    python -m benchmarks.scaling_bench [--max-runs 100000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchmarks._server import cheap_server

POINT = """
import asyncio, json, resource, time
from gateway_async import Gateway, RunRequest
async def main():
    async with Gateway(api_key="k", base_url="{url}") as gw:
        reqs = (RunRequest(model="demo-echo", input={{"i": i}}) for i in range({n}))
        cpu, wall = time.process_time(), time.perf_counter()
        results = await gw.runs.create_many(reqs, concurrency={c})
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        assert len(results) == {n}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({{"cpu_us": cpu / {n} * 1e6, "per_s": {n} / wall, "rss_mib": rss}}))
asyncio.run(main())
"""


def point(url: str, n: int, c: int) -> dict[str, float]:
    code = POINT.format(url=url, n=n, c=c)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-runs", type=int, default=100_000)
    args = parser.parse_args()
    sizes = [n for n in (1_000, 10_000, 100_000) if n <= args.max_runs]
    with cheap_server() as url:
        print("## Scaling\n\n### Scaling with batch size (concurrency 32)\n")
        print("| runs | runs/s | client CPU µs/run | peak RSS MiB |\n|---|---|---|---|")
        for n in sizes:
            p = point(url, n, 32)
            print(f"| {n:,} | {p['per_s']:,.0f} | {p['cpu_us']:.0f} | {p['rss_mib']:.0f} |")
        print("\n### Scaling with concurrency (10,000 runs)\n")
        print("| concurrent tasks | runs/s | client CPU µs/run | peak RSS MiB |\n|---|---|---|---|")
        for c in (10, 100, 1_000):
            p = point(url, 10_000, c)
            print(f"| {c:,} | {p['per_s']:,.0f} | {p['cpu_us']:.0f} | {p['rss_mib']:.0f} |")


if __name__ == "__main__":
    main()

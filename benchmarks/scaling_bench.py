"""How client CPU per run and peak memory change with the batch size and the concurrency,
and what one call in flight costs in memory.

Each point runs in a fresh process (so peak RSS is the point's own) against the same cheap
loopback server. Memory per task in flight: N ``gw.runs.create`` calls started at once
against a server (``holding_server``, its own process) that holds every reply until all N
requests have arrived; the client's RSS then, over its RSS before the calls (after a
warm-up call), divided by N; the same for a bare aiohttp loop of N concurrent POSTs with a
pool of N connections. Both processes raise their open-file limit to the hard limit; an N
that this machine cannot open that many sockets for is replaced by the largest that fits.

    python -m benchmarks.scaling_bench [--max-runs 100000] [--in-flight 1000,10000,50000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from benchmarks._server import cheap_server, holding_server, raise_open_files
from benchmarks._stats import reset_peak_rss, status_mib
from benchmarks.runs_bench import BODY, KEY

ROOT = Path(__file__).parent.parent
Call = Callable[[], Awaitable[Any]]

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


# -- memory per task in flight -------------------------------------------------------------


@asynccontextmanager
async def sdk_calls(url: str, n: int) -> AsyncIterator[Call]:
    from gateway_async import Gateway, Limits

    async with Gateway(api_key=KEY, base_url=url, limits=Limits(max_connections=n)) as gw:
        yield lambda: gw.runs.create(model="demo-echo", input={"i": 1})


@asynccontextmanager
async def raw_calls(url: str, n: int) -> AsyncIterator[Call]:
    import aiohttp

    async def call() -> None:
        headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
        headers["Idempotency-Key"] = os.urandom(16).hex()
        data = json.dumps(BODY).encode()
        async with session.post(f"{url}/api/runs", data=data, headers=headers) as resp:
            reply = json.loads(await resp.read())
            assert resp.status == 200, reply

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=n)) as session:
        yield call


IN_FLIGHT: dict[str, Callable[[str, int], AbstractAsyncContextManager[Call]]] = {
    "gateway_async runs.create": sdk_calls,
    "bare aiohttp POST": raw_calls,
}


async def _in_flight(name: str, url: str, n: int) -> dict[str, float]:
    import aiohttp

    async with aiohttp.ClientSession() as control, IN_FLIGHT[name](url, n) as call:
        await call()  # warm-up: imports, the pool, a first connection (not held)
        await (await control.post(f"{url}/arm", params={"n": str(n)})).release()
        gc.collect()
        reset_peak_rss()
        idle, wall = status_mib("VmRSS"), time.perf_counter()
        calls = asyncio.gather(*(call() for _ in range(n)))
        await (await control.get(f"{url}/arrived")).read()  # every request is at the server
        held, wall = status_mib("VmRSS"), time.perf_counter() - wall
        await (await control.post(f"{url}/release")).release()
        await calls
        return {"idle": idle, "held": held, "peak": status_mib("VmHWM"), "wall": wall}


def in_flight_child(name: str, url: str, n: int) -> None:
    """``--in-flight-child``: one point in a fresh process, printed as JSON."""
    raise_open_files()
    print(json.dumps(asyncio.run(_in_flight(name, url, n))))


def largest_n() -> tuple[int, str]:
    """The most sockets one client can open to one server here: its open-file hard limit
    (the server needs as many) and the ephemeral ports towards one address and port."""
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    files = raise_open_files()
    why = f"open-file hard limit {files:,}, {high - low + 1:,} ephemeral ports"
    return (min(files, high - low + 1) - 200) // 1000 * 1000, why


def in_flight_point(name: str, n: int) -> dict[str, float]:
    cmd = [sys.executable, "-m", "benchmarks.scaling_bench", "--in-flight-child", name]
    with holding_server() as url:
        done = subprocess.run([*cmd, url, str(n)], capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"{name} at N={n:,} failed:\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def in_flight_row(n: int) -> str:
    """One N: KiB per task of each client (RSS with all N waiting for their replies, over
    RSS before them, / N), their ratio, and how long the N took to reach the server."""
    try:
        points = [in_flight_point(name, n) for name in IN_FLIGHT]
    except RuntimeError as error:  # the other sizes still run
        return f"| {n:,} | failed: {str(error).splitlines()[-1][:150]} | | | |"
    sdk, raw = ((p["held"] - p["idle"]) * 1024 / n for p in points)
    walls = ", ".join(f"{p['wall']:.1f}" for p in points)
    return f"| {n:,} | {sdk:.1f} | {raw:.1f} | {sdk / raw:.2f} | {walls} |"


def in_flight_section(wanted: list[int]) -> list[str]:
    limit, why = largest_n()
    names = " | ".join(f"{name} KiB/task" for name in IN_FLIGHT)
    lines = [
        "### Memory per call in flight (all N at the server at once)",
        "",
        f"| N in flight | {names} | ratio | seconds until all N arrived (SDK, bare) |",
        "|---|---|---|---|---|",
        *(in_flight_row(n) for n in sorted({min(n, limit) for n in wanted})),
        "",
        "KiB per task: the client's RSS with all N calls waiting for their replies, over its "
        f"RSS before them (after a warm-up call), / N. Most sockets here: {why}.",
    ]
    if max(wanted) > limit:
        lines.append(f"N = {max(wanted):,} does not fit on this machine; run at {limit:,}.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-runs", type=int, default=100_000)
    parser.add_argument("--in-flight", default="1000,10000,50000", help="N calls at once")
    parser.add_argument("--in-flight-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_flight_child:
        name, url, n = args.in_flight_child
        in_flight_child(name, url, int(n))
        return
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
    if args.in_flight:
        print()
        print("\n".join(in_flight_section([int(n) for n in args.in_flight.split(",")])))


if __name__ == "__main__":
    main()

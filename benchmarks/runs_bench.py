"""Runs: N ``POST /api/runs`` at a fixed concurrency, SDK vs its peers, alternating rounds.

Peers: a raw aiohttp loop (the floor), httpx.AsyncClient (what most vendor SDKs use), and
requests with a thread pool (what many scripts do). Client CPU (user+sys of this process)
per run is the figure that matters: the server is a separate, deliberately cheap process.

    python -m benchmarks.runs_bench [--runs 10000] [--concurrency 32] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks import _ratios
from benchmarks._server import cheap_server
from benchmarks._stats import Sample, measure_forked, med_range, median, paired_cpu

KEY = "bench-key"
BODY: dict[str, Any] = {"model": "demo-echo", "mode": "execute", "input": {"i": 1}}


def sdk(url: str, n: int, conc: int) -> None:
    from gateway_async import Gateway, RunRequest

    async def main() -> None:
        async with Gateway(api_key=KEY, base_url=url) as gw:
            requests = (RunRequest(model="demo-echo", input={"i": 1}) for _ in range(n))
            results = await gw.runs.create_many(requests, concurrency=conc)
            assert all(not isinstance(r, Exception) for r in results)

    asyncio.run(main())


def raw_aiohttp(url: str, n: int, conc: int) -> None:
    import aiohttp

    async def main() -> None:
        left = iter(range(n))
        async with aiohttp.ClientSession() as session:

            async def worker() -> None:
                for _ in left:
                    headers = {
                        "X-API-Key": KEY,
                        "Content-Type": "application/json",
                        "Idempotency-Key": os.urandom(16).hex(),
                    }
                    async with session.post(
                        f"{url}/api/runs", data=json.dumps(BODY).encode(), headers=headers
                    ) as resp:
                        data = json.loads(await resp.read())
                        assert resp.status == 200, data

            await asyncio.gather(*(worker() for _ in range(conc)))

    asyncio.run(main())


def httpx_async(url: str, n: int, conc: int) -> None:
    import httpx

    async def main() -> None:
        left = iter(range(n))
        limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
        async with httpx.AsyncClient(base_url=url, limits=limits) as client:

            async def worker() -> None:
                for _ in left:
                    headers = {"X-API-Key": KEY, "Idempotency-Key": os.urandom(16).hex()}
                    resp = await client.post("/api/runs", json=BODY, headers=headers)
                    assert resp.status_code == 200, resp.text

            await asyncio.gather(*(worker() for _ in range(conc)))

    asyncio.run(main())


def requests_threads(url: str, n: int, conc: int) -> None:
    import requests

    local = threading.local()

    def one(_: int) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        headers = {"X-API-Key": KEY, "Idempotency-Key": os.urandom(16).hex()}
        resp = session.post(f"{url}/api/runs", json=BODY, headers=headers)
        assert resp.status_code == 200, resp.text

    with ThreadPoolExecutor(conc) as pool:
        list(pool.map(one, range(n)))


CLIENTS: dict[str, Callable[[str, int, int], None]] = {
    "gateway_async": sdk,
    "raw aiohttp": raw_aiohttp,
    "httpx.AsyncClient": httpx_async,
    "requests + threads": requests_threads,
}


def run(n: int, conc: int, rounds: int, names: list[str]) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {name: [] for name in names}
    with cheap_server() as url:
        for name in names:  # warm-up: imports, first connections
            CLIENTS[name](url, min(n, 500), conc)
        for _ in range(rounds):
            for name in names:  # alternate clients within each round
                # A forked child per round: the same start for every client, and its own RSS.
                sample = measure_forked(functools.partial(CLIENTS[name], url, n, conc), n)
                samples[name].append(sample)
    return samples


def table(samples: dict[str, list[Sample]]) -> str:
    base = samples["gateway_async"]
    lines = [
        "| client | runs/s (median, min-max) | client CPU µs/run (median, min-max) "
        "| CPU ratio to SDK (paired median) | peak RSS growth MiB (median) |",
        "|---|---|---|---|---|",
    ]
    for name, rows in samples.items():
        ratio = median([r.cpu / b.cpu for r, b in zip(rows, base, strict=True)])
        rate = med_range([r.per_second for r in rows])
        cpu = med_range([r.cpu_us_per_op for r in rows], ".0f")
        rss = median([r.rss_growth_mib for r in rows])
        lines.append(f"| {name} | {rate} | {cpu} | {ratio:.2f} | {rss:.1f} |")
    return "\n".join(lines)


def target(samples: dict[str, list[Sample]]) -> str:
    """The judged ratio: SDK CPU / raw aiohttp CPU per run, the median of paired rounds."""
    ratio, detail = paired_cpu(samples["gateway_async"], samples["raw aiohttp"])
    metric = f"{_ratios.RUNS}, CPU time"
    record = _ratios.emit(metric, ratio, "<= 1.05", detail)
    return _ratios.line(record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", default=",".join(CLIENTS))
    args = parser.parse_args()
    names = args.clients.split(",")
    samples = run(args.runs, args.concurrency, args.rounds, names)
    print(
        f"## Runs: {args.runs:,} POST /api/runs at concurrency {args.concurrency}, "
        f"{args.rounds} rounds\n"
    )
    print(table(samples))
    if {"gateway_async", "raw aiohttp"} <= samples.keys():
        print(f"\n{target(samples)}")


if __name__ == "__main__":
    main()

"""Ingest: N small files uploaded and indexed, ``gw.ingest`` against "upload all, then run all".

Both clients do the same work against the same emulator (``gateway_async.emulator``,
started in its own process so that its CPU is not counted as the client's): each file is
uploaded (init, PUT, complete, sha256 on) and then indexed with one ``demo-image-embed`` run
in mode ``index`` (its one required input, ``image``, takes the media_ref). ``gw.ingest``
starts each run as soon as its upload lands; the baseline calls ``media.upload_many`` for
every file, then ``runs.create_many`` for every MediaRef, with the same concurrencies.
Every round uses fresh scopes, so the indexes start empty. Rounds alternate the clients;
figures are medians with min-max. Client CPU is user+sys of this process (all threads).

    python -m benchmarks.pipeline_bench [--files 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import NamedTuple

from benchmarks._stats import Sample, measure, med_range, median
from benchmarks._storage_sink import cpu_seconds

KEY = "bench-key"
MODEL = "demo-image-embed"
FILE_SIZE = 2 * 1024
BALANCE = Decimal("1000000")  # 0.001 credits a run: plenty for every round


class Job(NamedTuple):
    base: str
    paths: list[Path]
    scope: str
    upload_concurrency: int
    run_concurrency: int


# -- the emulator, in its own process --------------------------------------------------------


def _serve_emulator(conn: Connection, latency: str | None) -> None:
    from gateway_async.emulator import Emulator, Faults

    faults = Faults.parse(f"latency={latency},seed=1") if latency else None

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with Emulator(api_keys=(KEY,), initial_balance=BALANCE, faults=faults) as emulator:
            conn.send(emulator.base_url)
            await stop.wait()  # then close it, which removes its temporary media directory

    asyncio.run(main())


@contextmanager
def emulator_process(latency: str | None) -> Iterator[tuple[str, int]]:
    """Start the emulator in a child process; yield its base URL and pid; stop it after."""
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("fork").Process(
        target=_serve_emulator, args=(theirs, latency), daemon=True
    )
    child.start()
    try:
        if not ours.poll(30):
            raise RuntimeError("the emulator did not start within 30 s")
        assert child.pid is not None
        yield ours.recv(), child.pid
    finally:
        child.terminate()
        child.join(30)


# -- the two clients -------------------------------------------------------------------------


def pipeline(job: Job) -> None:
    from gateway_async import Gateway

    async def main() -> None:
        async with Gateway(api_key=KEY, base_url=job.base) as gw:
            ingest = gw.ingest(
                job.paths,
                model=MODEL,
                mode="index",
                scope=job.scope,
                upload_concurrency=job.upload_concurrency,
                run_concurrency=job.run_concurrency,
            )
            failed = [item async for item in ingest if not item.ok]
            assert not failed, failed[:3]
            assert ingest.summary.total == len(job.paths), ingest.summary

    asyncio.run(main())


def upload_then_run(job: Job) -> None:
    from gateway_async import Gateway, RunRequest
    from gateway_async.models import MediaRef, Run

    async def main() -> None:
        async with Gateway(api_key=KEY, base_url=job.base) as gw:
            refs = await gw.media.upload_many(job.paths, concurrency=job.upload_concurrency)
            media = [ref for ref in refs if isinstance(ref, MediaRef)]
            assert len(media) == len(job.paths), [r for r in refs if r not in media][:3]
            requests = (
                RunRequest(model=MODEL, mode="index", scope=job.scope, input={"image": ref})
                for ref in media
            )
            runs = await gw.runs.create_many(requests, concurrency=job.run_concurrency)
            failed = [r for r in runs if not (isinstance(r, Run) and r.succeeded)]
            assert not failed, failed[:3]

    asyncio.run(main())


CLIENTS: dict[str, Callable[[Job], None]] = {
    "gw.ingest (pipelined)": pipeline,
    "upload_many, then runs.create_many": upload_then_run,
}


class Round(NamedTuple):
    sample: Sample
    server_cpu: float


def run(job: Job, pid: int, rounds: int) -> dict[str, list[Round]]:
    warm = job._replace(paths=job.paths[:200], scope="warm-up")
    for i, fn in enumerate(CLIENTS.values()):  # imports, first connections, emulator caches
        fn(warm._replace(scope=f"warm-up-{i}"))
    results: dict[str, list[Round]] = {name: [] for name in CLIENTS}
    names = list(CLIENTS)
    for round_no in range(rounds):
        for i in range(len(names)):
            name = names[(round_no + i) % len(names)]  # each round starts with the next one
            scoped = job._replace(scope=f"bench-r{round_no}-c{names.index(name)}")
            server = cpu_seconds(pid)
            sample = measure(functools.partial(CLIENTS[name], scoped), len(job.paths))
            results[name].append(Round(sample, cpu_seconds(pid) - server))
    return results


def table(results: dict[str, list[Round]]) -> str:
    lines = [
        "| client | items/s (median, min-max) | client CPU µs/item (median, min-max) "
        "| emulator CPU µs/item (median) |",
        "|---|---|---|---|",
    ]
    for name, rows in results.items():
        rate = med_range([r.sample.per_second for r in rows])
        cpu = med_range([r.sample.cpu_us_per_op for r in rows])
        server = median([r.server_cpu / r.sample.ops * 1e6 for r in rows])
        lines.append(f"| {name} | {rate} | {cpu} | {server:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--upload-concurrency", type=int, default=8, help="ingest's default")
    parser.add_argument("--run-concurrency", type=int, default=32, help="ingest's default")
    parser.add_argument(
        "--latency", help="seconds MIN-MAX the emulator adds to every request, e.g. 0.01-0.03"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gateway-pipeline-bench-") as tmp:
        paths = []
        for i in range(args.files):
            path = Path(tmp) / f"item{i:05d}.bin"
            path.write_bytes(os.urandom(FILE_SIZE))
            paths.append(path)
        with emulator_process(args.latency) as (base, pid):
            job = Job(base, paths, "", args.upload_concurrency, args.run_concurrency)
            results = run(job, pid, args.rounds)
    pipelined, baseline = (median([r.sample.per_second for r in rows]) for rows in results.values())
    print(
        f"## Ingest pipeline: {args.files:,} files of {FILE_SIZE // 1024} KiB, upload + "
        f"`{MODEL}` index run each, {args.rounds} rounds"
        + (f", {args.latency} s added to every request" if args.latency else "")
        + "\n"
    )
    print(
        f"Upload concurrency {args.upload_concurrency}, run concurrency "
        f"{args.run_concurrency} (ingest's defaults), both clients; the emulator runs in its "
        "own process on the same machine.\n"
    )
    print(table(results))
    print(
        f"\n- gw.ingest / (upload all, then run all): **{pipelined / baseline:.2f} x** "
        "items/s (ratio of medians)"
    )


if __name__ == "__main__":
    main()

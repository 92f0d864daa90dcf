"""Ray Data: ``map_runs`` against plain ``runs.create_many`` on one machine, and its
scaling over actors when every request takes 20 ms more.

Both clients talk to the same emulator (its own process, as in ``pipeline_bench``).
CPU is user+sys time: of this process for ``create_many``; for ``map_runs`` of this
process and every process under it (Ray's daemons and workers, the ones that exited
through their parents), the emulator excluded, split by process so that it says where
the CPU goes. The machine is shared, so the figure compared is the *marginal* CPU per
row: (CPU of a 3N-row job - CPU of an N-row job) / 2N, in paired rounds (each round
runs both clients at both sizes), which leaves out fixed costs (``ray.init``, actors
starting) and most of the neighbours' noise. Memory: this process's peak RSS, and the
largest peak RSS of a map actor (sampled from ``/proc`` twice a second during the job).

    python -m benchmarks.ray_bench [--rows 2000] [--rounds 3] [--scaling-rows 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy

from benchmarks.pipeline_bench import KEY, emulator_process
from gateway_async import Gateway, Run, RunRequest
from gateway_async.ray import GatewayRunner, map_runs

ROOT = Path(__file__).resolve().parent.parent
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray\.")
TICK = os.sysconf("SC_CLK_TCK")


def echo(row: dict[str, Any]) -> RunRequest:
    return RunRequest(model="demo-echo", input={"i": row["id"]})


class TimedRunner(GatewayRunner):
    """GatewayRunner that stamps when each batch started and ended."""

    async def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.time()
        out = await super().__call__(batch)
        rows = out.num_rows
        out = out.append_column("actor", pa.array([os.getpid()] * rows, pa.int64()))
        out = out.append_column("started", pa.array([started] * rows, pa.float64()))
        return out.append_column("ended", pa.array([time.time()] * rows, pa.float64()))


# -- CPU by process ------------------------------------------------------------------------


def _kind(pid: int) -> str:
    """What a process under this one is, from its command line (a worker's names itself
    ``ray::...`` once it runs; before that it is ``default_worker.py``)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "exiting"
    if not cmd.strip():
        return "exiting"  # a zombie: its command line is gone
    program = os.path.basename(cmd.split(" ", 1)[0])
    if cmd.startswith("ray::MapWorker"):
        return "map actors"
    if "_LedgerActor" in cmd:
        return "ledger actor"
    if cmd.startswith("ray::") or "default_worker.py" in cmd:
        return "other Ray workers"
    if program in ("raylet", "gcs_server"):
        return program
    return "other Ray daemons"


def _tree(root: int, exclude: set[int]) -> dict[int, int]:
    """Own CPU ticks (utime+stime) of ``root`` and its descendants, ``exclude`` left out."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (parent, _) in stats.items():
        children[parent].append(pid)
    seen, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid not in exclude and pid in stats:
            seen[pid] = stats[pid][1]
            todo.extend(children[pid])
    return seen


def sampler(root: int, exclude: set[int]) -> None:
    """``--sampler``: a process outside the tree it watches (its CPU is not counted) that
    keeps the last CPU seen of every process under ``root``, so a worker that exits
    mid-job still counts; each line on stdin gets the totals by kind as one JSON line."""
    exclude.add(os.getpid())
    last: dict[int, int] = {}
    kinds: dict[int, str] = {}
    asked = threading.Event()

    def listen() -> None:
        for _ in sys.stdin:
            asked.set()
        os._exit(0)

    threading.Thread(target=listen, daemon=True).start()
    while True:
        answer = asked.wait(0.2)
        for pid, ticks in _tree(root, exclude).items():  # a fresh look before any answer
            last[pid] = ticks  # a worker's kind changes as it starts: the last one seen,
            kind = "driver" if pid == root else _kind(pid)  # unless it is already exiting
            if kind != "exiting" or pid not in kinds:
                kinds[pid] = kind
        if answer:
            asked.clear()
            totals: Counter[str] = Counter()
            for pid, ticks in last.items():
                totals[kinds[pid]] += ticks / TICK
            print(json.dumps(totals), flush=True)


class CPUWatch:
    """The sampler process, asked for CPU seconds by kind before and after a job."""

    def __init__(self, exclude: set[int]) -> None:
        skip = ",".join(map(str, exclude))
        self._child = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.ray_bench", "--sampler", f"{os.getpid()}:{skip}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def __call__(self) -> Counter[str]:
        assert self._child.stdin is not None
        assert self._child.stdout is not None
        self._child.stdin.write("\n")
        self._child.stdin.flush()
        return Counter(json.loads(self._child.stdout.readline()))

    def close(self) -> None:
        assert self._child.stdin is not None
        assert self._child.stdout is not None
        self._child.stdin.close()
        self._child.wait(timeout=30)
        self._child.stdout.close()


class PeakRSS:
    """The largest peak RSS (VmHWM) seen of a map actor, sampled while a job runs."""

    def __init__(self) -> None:
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            for entry in os.scandir("/proc"):
                if entry.name.isdigit() and _kind(int(entry.name)) == "map actors":
                    self.peak_kib = max(self.peak_kib, _hwm(entry.path))


def _hwm(path: str) -> int:
    try:
        for line in Path(path, "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# -- the two clients -----------------------------------------------------------------------


class Result(NamedTuple):
    rows: int
    wall: float
    cpu: Counter[str]


def baseline(base: str, rows: int, concurrency: int = 64) -> Result:
    async def main() -> None:
        async with Gateway(api_key=KEY, base_url=base) as gw:
            requests = (echo({"id": i}) for i in range(rows))
            results = await gw.runs.create_many(requests, concurrency=concurrency)
            assert all(isinstance(r, Run) and r.succeeded for r in results)

    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(main())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Result(rows, wall, Counter({"driver": cpu}))


def on_ray(base: str, watch: CPUWatch, rows: int) -> Result:
    """``map_runs`` as a user calls it: 2 actors x 32 in flight, its ledger actor included."""
    before, wall = watch(), time.perf_counter()
    out = map_runs(
        ray.data.range(rows, override_num_blocks=8),
        job=f"bench-{time.time_ns()}",
        to_request=echo,
        actors=2,
        base_url=base,
    )
    statuses = Counter(row["run_status"] for row in out.select_columns(["run_status"]).take_all())
    wall = time.perf_counter() - wall
    cpu = watch()
    cpu.subtract(before)
    assert statuses == {"succeeded": rows}, statuses
    return Result(rows, wall, cpu)


def per_row(small: Result, large: Result) -> Counter[str]:
    """Marginal CPU seconds per row, by kind: what one more row costs."""
    extra = large.rows - small.rows
    return Counter({kind: (large.cpu[kind] - small.cpu[kind]) / extra for kind in large.cpu})


def one_machine(rows: int, rounds: int, base: str, watch: CPUWatch) -> list[str]:
    on_ray(base, watch, 64)  # warm-up: the first job also imports on the workers
    plain, ray_rows, ratios, walls = [], [], [], []
    for _ in range(rounds):
        a = per_row(baseline(base, rows), baseline(base, 3 * rows))
        small, large = on_ray(base, watch, rows), on_ray(base, watch, 3 * rows)
        b = per_row(small, large)
        plain.append(a)
        ray_rows.append(b)
        ratios.append(sum(b.values()) / sum(a.values()))
        walls.append((large.wall - small.wall) / (2 * rows))
    with PeakRSS() as peak:  # a job of its own: the sampling costs the driver CPU
        on_ray(base, watch, 3 * rows)
    base_us = statistics.median(sum(a.values()) for a in plain) * 1e6
    ray_us = statistics.median(sum(b.values()) for b in ray_rows) * 1e6
    kinds = sorted({k for b in ray_rows for k in b}, key=lambda k: -ray_rows[0][k])
    split = ", ".join(
        f"{kind} {statistics.median(b[kind] for b in ray_rows) * 1e6:,.0f} µs" for kind in kinds
    )
    driver_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return [
        f"### One machine: `demo-echo` runs, marginal CPU per row ({rows:,} vs {3 * rows:,} "
        f"rows, {rounds} paired rounds)",
        "",
        "| client | CPU per row (median) | rows/s marginal (median) |",
        "|---|---|---|",
        f"| `runs.create_many` (concurrency 64) | {base_us:,.0f} µs | - |",
        f"| `map_runs` (2 actors x 32, its ledger actor) | {ray_us:,.0f} µs "
        f"| {1 / statistics.median(walls):,.0f} |",
        "",
        f"- CPU per row, map_runs / create_many (paired median): "
        f"**{statistics.median(ratios):.2f} x** (rounds: "
        f"{', '.join(f'{r:.2f}' for r in ratios)})",
        f"- where map_runs' CPU per row goes (medians): {split}",
        f"- memory: driver peak RSS {driver_mib:,.0f} MiB; largest map actor peak RSS "
        f"{peak.peak_kib / 1024:,.0f} MiB",
    ]


# -- scaling -------------------------------------------------------------------------------


def ray_job(base: str, rows: int, actors: int, in_flight: int) -> float:
    """Steady rows/s of a TimedRunner pool: the sum over actors of each one's rows over
    its first batch start to last batch end (without the staggered start-ups)."""
    out = (
        ray.data.range(rows, override_num_blocks=max(8, 4 * actors))
        .map_batches(
            TimedRunner,
            fn_constructor_kwargs={
                "job": f"bench-{time.time_ns()}",
                "to_request": echo,
                "in_flight": in_flight,
                "base_url": base,
            },
            compute=ActorPoolStrategy(size=actors),
            num_cpus=0.25,
            batch_size=256,
            batch_format="pyarrow",
        )
        .select_columns(["run_status", "actor", "started", "ended"])
        .take_all()
    )
    assert {row["run_status"] for row in out} == {"succeeded"}
    by_actor: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in out:
        by_actor[row["actor"]].append(row)
    return sum(
        len(rows) / (max(r["ended"] for r in rows) - min(r["started"] for r in rows))
        for rows in by_actor.values()
    )


def scaling(rows_per_actor: int, base: str) -> list[str]:
    lines = [
        "### Scaling: 20 ms added to every request",
        "",
        "| actors x in_flight | rows | rows/s steady | vs 1 x 4 |",
        "|---|---|---|---|",
    ]
    one = None
    for actors, in_flight in ((1, 4), (2, 4), (4, 4), (1, 32)):
        steady = ray_job(base, rows_per_actor * actors, actors, in_flight)
        one = one or steady
        lines.append(
            f"| {actors} x {in_flight} | {rows_per_actor * actors:,} | {steady:,.0f} "
            f"| {steady / one:.2f} x |"
        )
    return lines


def start_ray() -> None:
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"GATEWAY_API_KEY": KEY, "PYTHONPATH": str(ROOT)}},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scaling-rows", type=int, default=1024, help="rows per actor")
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--sampler", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sampler:
        root, _, skip = args.sampler.partition(":")
        sampler(int(root), {int(pid) for pid in skip.split(",") if pid})
        return
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray").setLevel(logging.WARNING)  # stdout is the RESULTS.md section
    # Both emulators fork before Ray starts its threads in this process.
    with emulator_process(None) as (base, pid), emulator_process("0.02") as (slow, slow_pid):
        watch = CPUWatch({pid, slow_pid})
        try:
            start_ray()
            lines = ["## Ray Data (`gateway_async.ray`)", ""]
            lines += one_machine(args.rows, args.rounds, base, watch)
            if not args.no_scaling:
                lines += ["", *scaling(args.scaling_rows, slow)]
        finally:
            ray.shutdown()
            watch.close()
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Ray Data: ``map_runs`` against plain ``runs.create_many`` on one machine, and its
scaling over actors when every request takes 20 ms more.

Both clients talk to the same emulator (its own process, as in ``pipeline_bench``).
``create_many`` runs first, in this process, before Ray starts. The Ray side is
``GatewayRunner`` with ``map_runs``' defaults (0.25 CPU per actor, pyarrow batches of
256) plus the actor's pid and timestamps per batch, so the steady rate (per actor: rows
over its first batch start to last batch end; summed) is told apart from the fixed cost
of starting actors. Client CPU is user+sys of this process and every process under it
(Ray's daemons and workers, the dead ones through their parents), the emulator excluded.

    python -m benchmarks.ray_bench [--rows 4000] [--scaling-rows 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy

from benchmarks.pipeline_bench import KEY, emulator_process
from gateway_async import Gateway, Run, RunRequest
from gateway_async.ray import GatewayRunner

ROOT = Path(__file__).resolve().parent.parent
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray\.")


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


def tree_cpu(exclude: int) -> float:
    """CPU seconds of this process and its living descendants (with their reaped
    children), except ``exclude``."""
    usage: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            usage[int(entry.name)] = (int(fields[1]), sum(map(int, fields[11:15])))
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (parent, _) in usage.items():
        children[parent].append(pid)
    total, todo = 0, [os.getpid()]
    while todo:
        pid = todo.pop()
        if pid != exclude and pid in usage:
            total += usage[pid][1]
            todo.extend(children[pid])
    return total / os.sysconf("SC_CLK_TCK")


class Result(NamedTuple):
    rows: int
    wall: float
    cpu: float
    steady: float  # rows per second between the first batch start and the last batch end


def baseline(base: str, rows: int, concurrency: int) -> Result:
    async def main() -> None:
        async with Gateway(api_key=KEY, base_url=base) as gw:
            requests = (echo({"id": i}) for i in range(rows))
            results = await gw.runs.create_many(requests, concurrency=concurrency)
            assert all(isinstance(r, Run) and r.succeeded for r in results)

    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(main())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Result(rows, wall, cpu, rows / wall)


def ray_job(base: str, emulator: int, rows: int, actors: int, concurrency: int) -> Result:
    cpu, wall = tree_cpu(emulator), time.perf_counter()
    out = (
        ray.data.range(rows, override_num_blocks=max(8, 4 * actors))
        .map_batches(
            TimedRunner,
            fn_constructor_kwargs={
                "job": f"bench-{time.time_ns()}",
                "to_request": echo,
                "concurrency": concurrency,
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
    wall, cpu = time.perf_counter() - wall, tree_cpu(emulator) - cpu
    assert len(out) == rows
    assert {row["run_status"] for row in out} == {"succeeded"}
    return Result(rows, wall, cpu, steady_rate(out))


def steady_rate(out: list[dict[str, Any]]) -> float:
    """The sum over actors of each one's rows over its first batch start to last batch end:
    the rate of a long job whose actors all run, without their staggered start-ups."""
    by_actor: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in out:
        by_actor[row["actor"]].append(row)
    return sum(
        len(rows) / (max(r["ended"] for r in rows) - min(r["started"] for r in rows))
        for rows in by_actor.values()
    )


def start_ray() -> float:
    started = time.perf_counter()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"GATEWAY_API_KEY": KEY, "PYTHONPATH": str(ROOT)}},
    )
    return time.perf_counter() - started


def one_machine(plain: Result, init: float, base: str, pid: int) -> list[str]:
    ray_job(base, pid, 64, 2, 32)  # warm-up: the first job also imports on the workers
    on_ray = ray_job(base, pid, plain.rows, 2, 32)
    fixed = on_ray.wall - on_ray.rows / on_ray.steady
    return [
        f"### One machine: {plain.rows:,} `demo-echo` runs, no added latency",
        "",
        "| client | rows/s end to end | rows/s steady | client CPU per row |",
        "|---|---|---|---|",
        f"| `runs.create_many` (concurrency 64) | {plain.rows / plain.wall:,.0f} | - "
        f"| {plain.cpu / plain.rows * 1e6:,.0f} µs |",
        f"| `map_runs` (2 actors x 32) | {on_ray.rows / on_ray.wall:,.0f} "
        f"| {on_ray.steady:,.0f} | {on_ray.cpu / on_ray.rows * 1e6:,.0f} µs |",
        "",
        f"- ratio map_runs / create_many: end to end {plain.wall / on_ray.wall:.2f} x, "
        f"steady {on_ray.steady / (plain.rows / plain.wall):.2f} x; CPU per row "
        f"{on_ray.cpu / plain.cpu:.1f} x",
        f"- fixed start-up cost: `ray.init` {init:.1f} s, then {fixed:.1f} s per job "
        "(actors starting, first batches) before the steady rate",
    ]


def scaling(rows_per_actor: int, base: str, pid: int) -> list[str]:
    lines = [
        "### Scaling: 20 ms added to every request",
        "",
        "| actors x concurrency | rows | rows/s steady | vs 1 x 4 |",
        "|---|---|---|---|",
    ]
    one = None
    for actors, concurrency in ((1, 4), (2, 4), (4, 4), (1, 32)):
        result = ray_job(base, pid, rows_per_actor * actors, actors, concurrency)
        one = one or result.steady
        lines.append(
            f"| {actors} x {concurrency} | {result.rows:,} | {result.steady:,.0f} "
            f"| {result.steady / one:.2f} x |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--scaling-rows", type=int, default=1024, help="rows per actor")
    args = parser.parse_args()
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray").setLevel(logging.WARNING)  # stdout is the RESULTS.md section
    # Both emulators fork before Ray starts its threads in this process.
    with emulator_process(None) as (base, pid), emulator_process("0.02") as (slow, slow_pid):
        plain = baseline(base, args.rows, concurrency=64)
        try:
            init = start_ray()
            lines = ["## Ray Data (`gateway_async.ray`)", "", *one_machine(plain, init, base, pid)]
            lines += ["", *scaling(args.scaling_rows, slow, slow_pid)]
        finally:
            ray.shutdown()
    print("\n".join(lines))


if __name__ == "__main__":
    main()

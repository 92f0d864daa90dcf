"""Run every benchmark scenario and write benchmarks/RESULTS.md (``make bench``).

Each scenario is its own script (runnable alone); this one records the machine, runs them
one after another in fresh processes, collects their markdown tables and the ratios they
judge (``_ratios``: JSON lines in the file ``$BENCH_RATIOS``), prints those first as the
"Targets" table, and appends the hand-written reading of them kept in
benchmarks/ANALYSIS.md. A scenario that fails gets a failed row and section; the others
still run, and the exit code is 1.

    python -m benchmarks.run_all [--quick] [--only runs_bench,...] [--output FILE]

``--quick`` runs every scenario small (a few minutes) to check the plumbing: its figures
are not results, and it writes no RESULTS.md unless ``--output`` says where.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

from benchmarks import _ratios

HERE = Path(__file__).parent


class Scenario(NamedTuple):
    module: str
    args: list[str]
    quick: list[str]  # with --quick: fewer rounds, smaller files (checks the plumbing)


SHAPED = [*("--rate-mbps", "100", "--latency", "0.02"), "--no-fast"]
SMALL_PARTS = [*("--sizes-mib", "128", "--part-mib", "32", "--rounds", "1")]
SCENARIOS: list[Scenario] = [
    Scenario("runs_bench", [], ["--runs", "2000", "--rounds", "3"]),
    Scenario("otel_bench", [], ["--runs", "2000", "--rounds", "3"]),
    Scenario("instructions_bench", [], ["--runs", "100,300"]),
    Scenario("startup_bench", [], ["--rounds", "3", "--pairs", "6"]),
    Scenario("scaling_bench", [], ["--max-runs", "1000", "--in-flight", "1000,5000"]),
    Scenario(
        "uploads_bench",
        ["--rounds", "7"],
        [*("--size-mib", "128", "--files", "200", "--rounds", "2", "--rss-size-mib", "256")],
    ),
    Scenario("multipart_bench", [], SMALL_PARTS),
    # Storage that caps each connection, as object stores do: where parts pay off.
    Scenario(
        "multipart_bench",
        [*SHAPED, "--concurrency", "1,2,4,8"],
        [*SHAPED, "--concurrency", "1,4", *SMALL_PARTS],
    ),
    Scenario("identity_bench", [], ["--size-mib", "128", "--rounds", "1"]),
    Scenario("pipeline_bench", [], ["--files", "300", "--rounds", "1"]),
    Scenario(
        "pipeline_bench",
        ["--files", "2000", "--latency", "0.01-0.03"],
        ["--files", "300", "--rounds", "1", "--latency", "0.01-0.03"],
    ),
    Scenario("ray_bench", [], ["--rows", "300", "--rounds", "1", "--no-scaling"]),
]
HEADER = """# Benchmark results

Written by `make bench` (`python -m benchmarks.run_all`); do not edit by hand: the reading
of these numbers lives in `benchmarks/ANALYSIS.md` and is appended below. Every scenario
runs the SDK and its peers against the same loopback server in a separate process, which
is deliberately cheap so that the client's cost shows. Rounds alternate between clients;
figures are medians with min-max; CPU is user+sys time of the client process. The Targets
table gathers the ratios issue 25 judges, each from the scenario section below it names;
instruction counts (valgrind callgrind) are the deterministic twin of a CPU-time ratio.
"""
PACKAGES = ("aiohttp", "attrs", "cattrs", "aiofiles", "yarl", "httpx", "requests")


def machine() -> str:
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return (
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\n"
        f"- machine: {platform.machine()}, {os.cpu_count()} cores ({cpu_model()}), "
        f"{platform.system()} {platform.release()}; load average at the start "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
        f"- Python {platform.python_version()}; {', '.join(versions)}\n"
        f"- instruction counts: {valgrind()}\n"
    )


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            names = [
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            ]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or "unknown CPU"


def valgrind() -> str:
    if not shutil.which("valgrind"):
        return "valgrind not on PATH (no instruction-count rows)"
    done = subprocess.run(["valgrind", "--version"], capture_output=True, text=True)
    return done.stdout.strip()


def run(scenario: Scenario, quick: bool, ratios: str) -> str:
    """One scenario in a fresh process, its ratios appended to ``ratios``; its markdown, or
    (when it fails) a section that says so, with a failed row for the Targets table."""
    extra = scenario.quick if quick else scenario.args
    cmd = [sys.executable, "-m", f"benchmarks.{scenario.module}", *extra]
    print("running", " ".join(cmd), flush=True)
    env = {**os.environ, _ratios.ENV: ratios}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent, env=env)
    if not done.returncode:
        return done.stdout.strip()
    name = " ".join([scenario.module, *extra])
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    _ratios.write(
        {
            "metric": f"`{name}`",
            "measured": "-",
            "target": "-",
            "met": False,
            "failed": True,
            "detail": f"exit {done.returncode}: {last[:200]}",
        }
    )
    print(done.stderr, file=sys.stderr)
    return f"## `{name}` failed (exit {done.returncode})\n\n```\n{done.stderr[-3000:]}\n```"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", help="comma-separated scenario names (printed, not written)")
    parser.add_argument("--output", help="where to write (default: RESULTS.md for a full run)")
    parser.add_argument(
        "--quick", action="store_true", help="fewer rounds, smaller files (printed, not written)"
    )
    args = parser.parse_args()
    chosen = [s for s in SCENARIOS if not args.only or s.module in args.only.split(",")]
    header = f"{HEADER}\n{machine()}"  # the load average before the scenarios load it
    with tempfile.TemporaryDirectory(prefix="bench-ratios-") as tmp:
        ratios = os.path.join(tmp, "ratios.jsonl")
        os.environ[_ratios.ENV] = ratios  # run()'s failed rows go there too
        sections = [run(scenario, args.quick, ratios) for scenario in chosen]
        records = _ratios.read(ratios)
    analysis = (HERE / "ANALYSIS.md").read_text()
    targets = f"## Targets{' (--quick)' if args.quick else ''}\n\n{_ratios.table(records)}"
    text = f"{header}\n{targets}\n\n" + "\n\n".join(sections) + f"\n\n{analysis}"
    written = args.only or args.quick
    output = args.output or (None if written else str(HERE / "RESULTS.md"))
    if output:
        Path(output).write_text(text)
    print(text)
    if any(r.get("failed") for r in records):
        sys.exit(1)


if __name__ == "__main__":
    main()

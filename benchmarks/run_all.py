"""Run every benchmark scenario and write benchmarks/RESULTS.md (``make bench``).

Each scenario is its own script (runnable alone); this one records the machine, runs them
one after another in fresh processes, collects their markdown tables, and appends the
hand-written reading of them (targets, profiles) kept in benchmarks/ANALYSIS.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SCENARIOS: list[tuple[str, list[str]]] = [
    ("runs_bench", []),
    ("otel_bench", []),
    ("startup_bench", []),
    ("scaling_bench", []),
    ("uploads_bench", ["--rounds", "7"]),
    ("multipart_bench", []),
    # Storage that caps each connection, as object stores do: where parts pay off.
    (
        "multipart_bench",
        [*("--rate-mbps", "100", "--latency", "0.02"), *("--concurrency", "1,2,4,8", "--no-fast")],
    ),
    ("identity_bench", []),
    ("pipeline_bench", []),
    ("pipeline_bench", ["--files", "2000", "--latency", "0.01-0.03"]),
    ("ray_bench", []),
]
HEADER = """# Benchmark results

Written by `make bench` (`python -m benchmarks.run_all`); do not edit by hand: the reading
of these numbers lives in `benchmarks/ANALYSIS.md` and is appended below. Every scenario
runs the SDK and its peers against the same loopback server in a separate process, which
is deliberately cheap so that the client's cost shows. Rounds alternate between clients;
figures are medians with min-max; CPU is user+sys time of the client process.
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
        f"- date: {datetime.date.today().isoformat()}\n"
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()}\n"
        f"- Python {platform.python_version()}; {', '.join(versions)}\n"
    )


def run(module: str, extra: list[str]) -> str:
    cmd = [sys.executable, "-m", f"benchmarks.{module}", *extra]
    print("running", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=HERE.parent)
    return out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", help="comma-separated scenario names (printed, not written)")
    parser.add_argument("--output", help="where to write (default: RESULTS.md for a full run)")
    args = parser.parse_args()
    chosen = [s for s in SCENARIOS if not args.only or s[0] in args.only.split(",")]
    sections = [run(module, extra) for module, extra in chosen]
    analysis = (HERE / "ANALYSIS.md").read_text()
    text = f"{HEADER}\n{machine()}\n" + "\n\n".join(sections) + f"\n\n{analysis}"
    output = args.output or (None if args.only else str(HERE / "RESULTS.md"))
    if output:
        Path(output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Run every benchmark scenario and write benchmarks/RESULTS.md (``make bench``).

Each scenario is its own script (runnable alone); this one records the machine, runs them
one after another in fresh processes, and collects their markdown tables.
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
    ("startup_bench", []),
    ("scaling_bench", []),
]
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
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--output", default=str(HERE / "RESULTS.generated.md"))
    args = parser.parse_args()
    chosen = [s for s in SCENARIOS if not args.only or s[0] in args.only.split(",")]
    sections = [run(module, extra) for module, extra in chosen]
    text = "# Benchmark results (generated)\n\n" + machine() + "\n" + "\n\n".join(sections) + "\n"
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

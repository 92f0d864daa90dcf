"""Multipart uploads: one big file as parts sent 4 at once vs one PUT vs ``curl -T``.

Each client uploads the same file to a cheap loopback sink (``_storage_sink.PutSink``
counts and discards bodies) in a fresh process per round; rounds alternate the clients.
The version-2 sink answers ``init`` with parts of ``--part-mib``; the version-1 sink (the
same code without parts) with one URL. Per client: MB/s, client CPU s/GiB (all threads and
children) and the peak RSS growth of the uploading process (VmHWM over the RSS after its
imports). Targets: multipart with sha256 >= 1.2x single PUT with sha256 (parts hash in
parallel threads), peak RSS growth < 64 MiB at 4 GiB.

    python -m benchmarks.multipart_bench [--sizes-mib 1024,4096] [--rounds 3] [--part-mib 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._stats import fmt_range, median, reset_peak_rss, status_mib
from benchmarks._storage_sink import SinkUrls, storage_sink
from benchmarks.uploads_bench import KEY, ROOT, rotated, sha256_file, verdict, write_random

MIB = 1 << 20
CURL = "curl -T (one PUT, no hash)"
MULTI_SUM = "gateway_async multipart, 4 parts at once, checksum=True"
MULTI_FAST = "gateway_async multipart, 4 parts at once, checksum=False"
SINGLE_SUM = "gateway_async single PUT, checksum=True"
SINGLE_FAST = "gateway_async single PUT, checksum=False"
CLIENTS = (MULTI_SUM, SINGLE_SUM, MULTI_FAST, SINGLE_FAST, CURL)


def child_round(name: str, base: str, put: str, path: str) -> None:
    """In a fresh process: one round of one client, printed as JSON."""
    from gateway_async import Gateway

    file = Path(path)
    size = file.stat().st_size

    async def sdk(checksum: bool) -> None:
        async with Gateway(api_key=KEY, base_url=base, allow_insecure_http=True) as gw:
            ref = await gw.media.upload(file, checksum=checksum, part_concurrency=4)
            assert ref.size == size

    reset_peak_rss()
    rss0 = status_mib("VmRSS")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if name == CURL:
        cmd = [
            "curl",
            "-sS",
            "--fail",
            "-T",
            path,
            "-X",
            "PUT",
            f"{put}/put/curl",
            "-o",
            "/dev/null",
        ]
        subprocess.run(cmd, check=True)
    else:
        asyncio.run(sdk(checksum="checksum=True" in name))
    wall = time.perf_counter() - wall0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - cpu0 + usage.ru_utime + usage.ru_stime
    print(json.dumps({"wall": wall, "cpu": cpu, "rss": status_mib("VmHWM") - rss0}))


def one_round(urls: SinkUrls, name: str, path: Path) -> dict[str, float]:
    cmd = [sys.executable, "-m", "benchmarks.multipart_bench", "--child", name]
    done = subprocess.run(
        [*cmd, urls.base, urls.put, str(path)], capture_output=True, text=True, cwd=ROOT
    )
    if done.returncode:
        raise RuntimeError(f"{name} failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_size(size: int, rounds: int, part: int, tmp: Path) -> str:
    path = write_random(tmp / f"big-{size}.bin", size)
    sha256_file(path)  # page cache warm
    results: dict[str, list[dict[str, float]]] = {name: [] for name in CLIENTS}
    with storage_sink(part) as multi, storage_sink() as single:
        for round_no in range(rounds):
            for name in rotated(list(CLIENTS), round_no):
                urls = multi if "multipart" in name else single
                results[name].append(one_round(urls, name, path))
    path.unlink()
    return table(results, size)


def table(results: dict[str, list[dict[str, float]]], size: int) -> str:
    gib = size / (1 << 30)
    speed = {name: [size / r["wall"] / 1e6 for r in rows] for name, rows in results.items()}
    lines = [
        f"### {size // MIB} MiB file",
        "",
        "| client | MB/s (median, min-max) | client CPU s/GiB | peak RSS growth MiB |",
        "|---|---|---|---|",
    ]
    for name, rows in results.items():
        cpu = median([r["cpu"] / gib for r in rows])
        rss = max(r["rss"] for r in rows)
        lines.append(
            f"| {name} | {median(speed[name]):,.0f} ({fmt_range(speed[name])}) | {cpu:.2f} "
            f"| {rss:.1f} |"
        )
    ratio = median(speed[MULTI_SUM]) / median(speed[SINGLE_SUM])
    rss = max(r["rss"] for r in results[MULTI_SUM])
    lines += [
        "",
        f"- multipart / single PUT, both with sha256: {verdict(ratio, 1.2)}",
        f"- multipart peak RSS growth: **{'met' if rss < 64 else 'missed'}** "
        f"({rss:.1f} MiB, target < 64 MiB)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes-mib", default="1024,4096")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--part-mib", type=int, default=64)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_round(*args.child)
        return
    sections = ["## Multipart uploads (`multipart_bench`)", ""]
    with tempfile.TemporaryDirectory(prefix="multipart-bench-") as tmp:
        for mib in (int(s) for s in args.sizes_mib.split(",")):
            sections.append(run_size(mib * MIB, args.rounds, args.part_mib * MIB, Path(tmp)))
            sections.append("")
    print("\n".join(sections).rstrip())


if __name__ == "__main__":
    main()

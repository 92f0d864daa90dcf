"""What ``job=`` costs an upload: the content is hashed before ``init`` (one extra read of
the file), for a file in the page cache and for one that is not.

Each round uploads the same 1 GiB file in a fresh process to the loopback sink (one PUT,
checksum=True), with and without ``job=``; the "uncached" clients first drop the file's
pages from the page cache (``posix_fadvise(DONTNEED)``, this file only), so both the extra
read and the PUT's read come from the disk. Rounds alternate the clients.

    python -m benchmarks.identity_bench [--size-mib 1024] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._stats import med_range, median
from benchmarks._storage_sink import storage_sink
from benchmarks.uploads_bench import KEY, ROOT, rotated, sha256_file, write_random

MIB = 1 << 20
CLIENTS = {
    "checksum=True, cached": (False, True),
    "job=, cached (one extra read)": (True, True),
    "checksum=True, not cached": (False, False),
    "job=, not cached (one extra read)": (True, False),
}


def child(name: str, base: str, path: str) -> None:
    from gateway_async import Gateway

    job, cached = CLIENTS[name]
    if not cached:
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)

    async def upload() -> None:
        async with Gateway(api_key=KEY, base_url=base, allow_insecure_http=True) as gw:
            options = {"job": "bench-job"} if job else {}
            await gw.media.upload(Path(path), **options)  # type: ignore[arg-type]

    cpu0, wall0 = time.process_time(), time.perf_counter()
    asyncio.run(upload())
    print(json.dumps({"wall": time.perf_counter() - wall0, "cpu": time.process_time() - cpu0}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    size = args.size_mib * MIB
    results: dict[str, list[dict[str, float]]] = {name: [] for name in CLIENTS}
    with tempfile.TemporaryDirectory(prefix="identity-bench-") as tmp, storage_sink() as urls:
        path = write_random(Path(tmp) / "big.bin", size)
        sha256_file(path)
        for round_no in range(args.rounds):
            for name in rotated(list(CLIENTS), round_no):
                cmd = [sys.executable, "-m", "benchmarks.identity_bench", "--child", name]
                out = subprocess.run(
                    [*cmd, urls.base, str(path)], capture_output=True, text=True, cwd=ROOT
                )
                if out.returncode:
                    raise RuntimeError(f"{name} failed:\n{out.stderr}")
                results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    gib = size / (1 << 30)
    print(f"## What job= costs: one {args.size_mib:,} MiB upload, {args.rounds} rounds\n")
    print("| client | s per upload (median, min-max) | client CPU s/GiB (median) |")
    print("|---|---|---|")
    walls = {name: [r["wall"] for r in rows] for name, rows in results.items()}
    for name, rows in results.items():
        cpu = median([r["cpu"] / gib for r in rows])
        print(f"| {name} | {med_range(walls[name], '.2f')} | {cpu:.2f} |")
    print()
    for cached in ("cached", "not cached"):
        plain = median(walls[f"checksum=True, {cached}"])
        named = median(walls[f"job=, {cached} (one extra read)"])
        print(f"- job= / plain upload, {cached}: {named / plain:.2f} x the time")


if __name__ == "__main__":
    main()

"""Multipart uploads: one big file as parts sent N at once vs one PUT (vs ``curl -T``).

Each client uploads the same file to a cheap loopback sink (``_storage_sink``: counts and
discards bodies) in a fresh process per round; rounds alternate the clients. The version-2
sink answers ``init`` with parts of ``--part-mib``; the version-1 sink (the same code
without parts) with one URL. Per client: MB/s, client CPU s/GiB (all threads and
children), the sink's CPU s/GiB, and the uploading process's peak RSS growth (VmHWM over
its RSS after imports).

Two questions, two settings:

- Unshaped loopback (the default): sender, hashing threads and sink share this machine's
  cores, so both paths are CPU-bound and parts cannot beat one PUT; the target is that
  they cost nothing (multipart >= 1.0 x one PUT, with and without sha256).
- ``--rate-mbps R`` caps each PUT connection at R MB/s, as object stores do, and
  ``--latency S`` delays every answer: there parts pay off (target: >= 3 x one PUT at 4
  parts), and the sweep ``--concurrency 1,2,4,8`` is what the ``part_concurrency``
  default follows from.

    python -m benchmarks.multipart_bench [--sizes-mib 1024] [--rounds 3] [--part-mib 64]
        [--concurrency 4] [--rate-mbps 0] [--latency 0] [--no-curl] [--no-fast]
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
from typing import NamedTuple

from benchmarks import _ratios
from benchmarks._stats import fmt_range, median, reset_peak_rss, status_mib
from benchmarks._storage_sink import Shape, SinkUrls, cpu_seconds, storage_sink
from benchmarks.uploads_bench import KEY, ROOT, rotated, sha256_file, write_random

MIB = 1 << 20
UNSHAPED_LABEL = "unshaped loopback"


class Client(NamedTuple):
    name: str
    kind: str  # "sdk" or "curl"
    parts: int  # part_concurrency; 0: the one-PUT sink (contract version 1)
    checksum: bool


CURL = Client("curl -T (one PUT, no hash)", "curl", 0, False)
ONE_SUM = Client("gateway_async one PUT, checksum=True", "sdk", 0, True)
ONE_FAST = Client("gateway_async one PUT, checksum=False", "sdk", 0, False)


def multipart(parts: int, checksum: bool) -> Client:
    return Client(
        f"gateway_async multipart, {parts} at once, checksum={checksum}", "sdk", parts, checksum
    )


def child_round(client: Client, base: str, put: str, path: str) -> None:
    """In a fresh process: one round of one client, printed as JSON."""
    import gateway_async.resources.media  # noqa: F401  (imports are not part of the measurement)
    from gateway_async import Gateway

    file = Path(path)
    size = file.stat().st_size

    async def sdk() -> None:
        async with Gateway(api_key=KEY, base_url=base, allow_insecure_http=True) as gw:
            options = {"part_concurrency": client.parts} if client.parts else {}
            ref = await gw.media.upload(file, checksum=client.checksum, **options)
            assert ref.size == size

    reset_peak_rss()
    rss0 = status_mib("VmRSS")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if client.kind == "curl":
        cmd = ["curl", "-sS", "--fail", "-T", path, "-X", "PUT", f"{put}/put/curl"]
        subprocess.run([*cmd, "-o", "/dev/null"], check=True)
    else:
        asyncio.run(sdk())
    wall = time.perf_counter() - wall0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - cpu0 + usage.ru_utime + usage.ru_stime
    print(json.dumps({"wall": wall, "cpu": cpu, "rss": status_mib("VmHWM") - rss0}))


def one_round(urls: SinkUrls, client: Client, path: Path) -> dict[str, float]:
    cmd = [sys.executable, "-m", "benchmarks.multipart_bench", "--child", json.dumps(client)]
    sink = cpu_seconds(urls.pid)
    done = subprocess.run(
        [*cmd, urls.base, urls.put, str(path)], capture_output=True, text=True, cwd=ROOT
    )
    if done.returncode:
        raise RuntimeError(f"{client.name} failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    result["sink"] = cpu_seconds(urls.pid) - sink
    return result


def clients(concurrency: list[int], curl: bool, fast: bool) -> list[Client]:
    chosen = [multipart(n, True) for n in concurrency] + [ONE_SUM]
    if fast:
        chosen += [multipart(4 if 4 in concurrency else concurrency[0], False), ONE_FAST]
    return chosen + ([CURL] if curl else [])


def run_size(size: int, args: argparse.Namespace, tmp: Path) -> str:
    path = write_random(tmp / f"big-{size}.bin", size)
    sha256_file(path)  # page cache warm
    chosen = clients([int(n) for n in args.concurrency.split(",")], args.curl, args.fast)
    results: dict[Client, list[dict[str, float]]] = {client: [] for client in chosen}
    shape = Shape(rate=args.rate_mbps * 1e6, latency=args.latency)
    with storage_sink(args.part_mib * MIB, shape) as multi, storage_sink(0, shape) as single:
        for round_no in range(args.rounds):
            for client in rotated(chosen, round_no):
                urls = multi if client.parts else single
                results[client].append(one_round(urls, client, path))
    path.unlink()
    return table(results, size, shape_label(args))


def table(results: dict[Client, list[dict[str, float]]], size: int, shape: str) -> str:
    gib = size / (1 << 30)
    speed = {client: [size / r["wall"] / 1e6 for r in rows] for client, rows in results.items()}
    cpu = {client: median([r["cpu"] / gib for r in rows]) for client, rows in results.items()}
    lines = [
        f"### {size // MIB} MiB file",
        "",
        "| client | MB/s (median, min-max) | client CPU s/GiB | sink CPU s/GiB "
        "| peak RSS growth MiB |",
        "|---|---|---|---|---|",
    ]
    for client, rows in results.items():
        sink = median([r["sink"] / gib for r in rows])
        rss = max(r["rss"] for r in rows)
        lines.append(
            f"| {client.name} | {median(speed[client]):,.0f} ({fmt_range(speed[client])}) "
            f"| {cpu[client]:.2f} | {sink:.2f} | {rss:.1f} |"
        )
    lines.append("")
    for client in results:
        one = ONE_SUM if client.checksum else ONE_FAST
        if client.parts and client.kind == "sdk" and one in results:
            lines.append(judged(client, one, speed, cpu, (f"{size // MIB} MiB", shape)))
    rss = max(r["rss"] for client, rows in results.items() if client.parts for r in rows)
    lines.append(
        f"- multipart peak RSS growth: **{'met' if rss < 64 else 'missed'}** "
        f"({rss:.1f} MiB, target < 64 MiB)"
    )
    return "\n".join(lines)


def judged(
    client: Client,
    one: Client,
    speed: dict[Client, list[float]],
    cpu: dict[Client, float],
    where: tuple[str, str],
) -> str:
    """Multipart over one PUT (ratio of medians): judged on unshaped loopback (>= 1.0) and,
    shaped, at 4 parts at once (>= 3); the other points of a sweep are only printed."""
    ratio = median(speed[client]) / median(speed[one])
    size, shape = where
    shaped = shape != UNSHAPED_LABEL
    target = 3.0 if shaped and client.parts == 4 else None if shaped else 1.0
    if target is None:
        return f"- {client.name} / {one.name}: {ratio:.2f}"
    record = _ratios.emit(
        f"{_ratios.SHAPED if shaped else _ratios.MULTIPART}, {client.parts} parts at once, "
        f"{size}, checksum={client.checksum}",
        ratio,
        f">= {target:g}",
        f"{median(speed[client]):,.0f} vs {median(speed[one]):,.0f} MB/s; client CPU "
        f"{cpu[client]:.2f} vs {cpu[one]:.2f} s/GiB" + (f"; {shape}" if shaped else ""),
    )
    return _ratios.line(record)


def shape_label(args: argparse.Namespace) -> str:
    if not (args.rate_mbps or args.latency):
        return UNSHAPED_LABEL
    label = f"sink capped at {args.rate_mbps:g} MB/s per connection"
    return label + (f", {args.latency * 1000:g} ms per answer" if args.latency else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes-mib", default="1024")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--part-mib", type=int, default=64)
    parser.add_argument("--concurrency", default="4", help="part_concurrency values to compare")
    parser.add_argument("--rate-mbps", type=float, default=0.0, help="cap per PUT connection")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--no-curl", dest="curl", action="store_false")
    parser.add_argument("--no-fast", dest="fast", action="store_false", help="sha256 only")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_round(Client(*json.loads(args.child[0])), *args.child[1:])
        return
    sections = [f"## Multipart uploads (`multipart_bench`, {shape_label(args)})", ""]
    with tempfile.TemporaryDirectory(prefix="multipart-bench-") as tmp:
        for mib in (int(s) for s in args.sizes_mib.split(",")):
            sections.append(run_size(mib * MIB, args, Path(tmp)))
            sections.append("")
    print("\n".join(sections).rstrip())


if __name__ == "__main__":
    main()

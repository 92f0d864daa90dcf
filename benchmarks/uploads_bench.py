"""Uploads: one big file, many small files, and the client's memory during a big upload.

Every client talks to the same sink (``_storage_sink``: init/complete on one loopback port,
a PUT sink that discards bodies on another), in a separate process. Rounds alternate the
clients (each round starts with the next one); figures are medians with min-max. Client
CPU is user+sys of the client's process (all its threads) and of its children (curl).

1. One ``--size-mib`` file, each round of each client in a fresh process (imports done
   before the clock starts): curl, a raw aiohttp PUT of the open file, the SDK with and
   without ``checksum``, and two references: sha256 of the file on one core (no network),
   and curl with a concurrent sha256 of the file (what this machine allows for "send and
   hash" when the sender, the hasher and the sink share its cores).
2. ``--files`` files of 100 KiB at concurrency 16, init → PUT → complete each: the SDK's
   ``upload_many`` against a raw aiohttp loop of 16 workers (reading each file with one
   blocking read on the loop, the cheapest way), both with and without sha256; and, for
   scale, the raw loop reading each file in a worker thread (one ``asyncio.to_thread``).
3. Peak RSS growth of a fresh client process uploading a ``--rss-size-mib`` file (default
   ``checksum=True``), from idle after a warm-up upload (the kernel's exact peak, VmHWM).

    python -m benchmarks.uploads_bench [--size-mib 1024] [--files 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from benchmarks import _ratios
from benchmarks._stats import (
    Sample,
    children_cpu,
    fmt_range,
    measure,
    median,
    reset_peak_rss,
    status_mib,
)
from benchmarks._storage_sink import SinkUrls, cpu_seconds, storage_sink

ROOT = Path(__file__).parent.parent
KEY = "bench-key"
MIB = 1 << 20
SMALL_FILE = 100 * 1024
CONCURRENCY = 16
OCTET = "application/octet-stream"
API_HEADERS = {"X-API-Key": KEY, "Content-Type": "application/json"}

Client = Callable[[SinkUrls, Path], None]
ManyClient = Callable[[SinkUrls, list[Path]], None]


# -- files ---------------------------------------------------------------------------------


def write_random(path: Path, size: int) -> Path:
    with path.open("wb") as out:
        for offset in range(0, size, MIB):
            out.write(os.urandom(min(MIB, size - offset)))
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


# -- one big file --------------------------------------------------------------------------


def curl_put(urls: SinkUrls, path: Path) -> None:
    # --fail: the sink answers 400 when fewer bytes than Content-Length arrived.
    cmd = ["curl", "-sS", "--fail", "-T", str(path), "-X", "PUT", f"{urls.put}/put/curl"]
    subprocess.run([*cmd, "-o", "/dev/null"], check=True)


def raw_aiohttp_put(urls: SinkUrls, path: Path) -> None:
    import aiohttp

    headers = {"Content-Length": str(path.stat().st_size), "Content-Type": OCTET}

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            with path.open("rb") as file:
                put = session.put(f"{urls.put}/put/raw", data=file, headers=headers)
                async with put as resp:
                    assert resp.status == 200, await resp.text()

    asyncio.run(main())


def sdk_upload(checksum: bool) -> Client:
    def upload(urls: SinkUrls, path: Path) -> None:
        from gateway_async import Gateway

        size = path.stat().st_size

        async def main() -> None:
            async with Gateway(api_key=KEY, base_url=urls.base) as gw:
                ref = await gw.media.upload(path, checksum=checksum)
                assert ref.size == size

        asyncio.run(main())

    return upload


def sha256_only(urls: SinkUrls, path: Path) -> None:
    sha256_file(path)


def curl_with_sha256(urls: SinkUrls, path: Path) -> None:
    with ThreadPoolExecutor(1) as pool:
        hashing = pool.submit(sha256_file, path)
        curl_put(urls, path)
        hashing.result()


CURL = "curl -T (PUT only)"
SDK_FAST = "gateway_async, checksum=False"
SDK_SUMMED = "gateway_async, checksum=True (default)"
SHA = "sha256 alone, 1 MiB reads (1 core, no network)"
BOTH = "curl and sha256 at once (send+hash bound of this machine)"
BIG_CLIENTS: dict[str, Client] = {
    CURL: curl_put,
    "raw aiohttp PUT of the open file": raw_aiohttp_put,
    SDK_FAST: sdk_upload(False),
    SDK_SUMMED: sdk_upload(True),
    SHA: sha256_only,
    BOTH: curl_with_sha256,
}


@attrs.frozen
class Round:
    sample: Sample  # ops = bytes; cpu includes child processes (curl)
    sink_cpu: float


def rotated(names: Sequence[str], round_no: int) -> Iterator[str]:
    """The clients in turn, each round starting with the next one."""
    for i in range(len(names)):
        yield names[(round_no + i) % len(names)]


def big_child(name: str, base: str, put: str, path: str) -> None:
    """In a fresh process: one round of one big-file client, printed as JSON."""
    import aiohttp  # noqa: F401  (imports are not part of the measurement)

    import gateway_async.resources.media  # noqa: F401  (gw.media's, loaded on first use)

    file = Path(path)
    children = children_cpu()
    call = functools.partial(BIG_CLIENTS[name], SinkUrls(base, put, 0), file)
    sample = measure(call, file.stat().st_size)
    print(json.dumps({"wall": sample.wall, "cpu": sample.cpu + children_cpu() - children}))


def in_fresh_process(urls: SinkUrls, name: str, path: Path) -> Round:
    """One round of ``name`` in its own process, as a worker would run it: no client
    inherits another's threads, allocator state or warm caches (curl never does)."""
    cmd = [sys.executable, "-m", "benchmarks.uploads_bench", "--big-child", name]
    sink = cpu_seconds(urls.pid)
    done = subprocess.run(
        [*cmd, urls.base, urls.put, str(path)], capture_output=True, text=True, cwd=ROOT
    )
    if done.returncode:
        raise RuntimeError(f"{name} failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    sample = Sample(result["wall"], result["cpu"], path.stat().st_size)
    return Round(sample, cpu_seconds(urls.pid) - sink)


def run_big(urls: SinkUrls, path: Path, rounds: int) -> dict[str, list[Round]]:
    sha256_file(path)  # page cache warm
    results: dict[str, list[Round]] = {name: [] for name in BIG_CLIENTS}
    for round_no in range(rounds):
        for name in rotated(list(BIG_CLIENTS), round_no):
            results[name].append(in_fresh_process(urls, name, path))
    return results


def mb_s(rows: list[Round]) -> list[float]:
    return [r.sample.per_second / 1e6 for r in rows]


def big_table(results: dict[str, list[Round]], size: int) -> str:
    gib = size / (1 << 30)
    lines = [
        "| client | MB/s (median, min-max) | client CPU s/GiB (median) | sink CPU s/GiB (median) |",
        "|---|---|---|---|",
    ]
    for name, rows in results.items():
        speed = mb_s(rows)
        cpu = median([r.sample.cpu / gib for r in rows])
        sink = median([r.sink_cpu / gib for r in rows])
        lines.append(
            f"| {name} | {median(speed):,.0f} ({fmt_range(speed)}) | {cpu:.2f} | {sink:.2f} |"
        )
    return "\n".join(lines)


def verdict(ratio: float, target: float) -> str:
    return f"**{'met' if ratio >= target else 'missed'}** ({ratio:.2f}, target >= {target:g})"


def big_targets(results: dict[str, list[Round]]) -> str:
    """The checksum=False line, and issue 25's: one PUT with sha256 over the slower of curl
    and sha256 alone, as the median and the worst of the per-round ratios (the clients of a
    round run back to back), with the send+hash bound of this machine beside it."""
    speed = {name: median(mb_s(rows)) for name, rows in results.items()}
    summed, curl, sha, both = (mb_s(results[name]) for name in (SDK_SUMMED, CURL, SHA, BOTH))
    per_round = [s / min(c, h) for s, c, h in zip(summed, curl, sha, strict=True)]
    detail = (
        f"{speed[SDK_SUMMED]:,.0f} MB/s vs curl {speed[CURL]:,.0f}, sha256 {speed[SHA]:,.0f}; "
        f"/ (curl and sha256 at once, {speed[BOTH]:,.0f}) = {speed[SDK_SUMMED] / speed[BOTH]:.2f}"
    )
    metric = _ratios.PUT_SHA256
    records = [
        _ratios.emit(f"{metric}, median of rounds", median(per_round), ">= 0.95", detail),
        _ratios.emit(
            f"{metric}, worst round",
            min(per_round),
            ">= 0.95",
            "rounds: " + ", ".join(f"{r:.2f}" for r in per_round),
        ),
    ]
    return (
        f"- SDK checksum=False / curl: {verdict(speed[SDK_FAST] / speed[CURL], 0.9)}\n"
        + "\n".join(_ratios.line(r) for r in records)
        + f"\n- SDK checksum=True / (curl and sha256 at once) = {speed[SDK_SUMMED]:,.0f} / "
        f"{speed[BOTH]:,.0f}: {speed[SDK_SUMMED] / speed[BOTH]:.2f} (per round: "
        + ", ".join(f"{s / b:.2f}" for s, b in zip(summed, both, strict=True))
        + ")"
    )


# -- many small files ----------------------------------------------------------------------


def sdk_many(checksum: bool) -> ManyClient:
    def upload(urls: SinkUrls, paths: list[Path]) -> None:
        from gateway_async import Gateway

        async def main() -> None:
            async with Gateway(api_key=KEY, base_url=urls.base) as gw:
                refs = await gw.media.upload_many(paths, concurrency=CONCURRENCY, checksum=checksum)
                assert not [r for r in refs if isinstance(r, Exception)], refs[:3]

        asyncio.run(main())

    return upload


def raw_many(checksum: bool, threaded: bool = False) -> ManyClient:
    """A raw aiohttp loop; ``threaded`` reads each file in a worker thread, not on the loop."""

    def upload(urls: SinkUrls, paths: list[Path]) -> None:
        import aiohttp

        async def main() -> None:
            left = iter(paths)
            async with aiohttp.ClientSession() as session:

                async def call(route: str, body: dict[str, Any]) -> dict[str, Any]:
                    headers = {**API_HEADERS, "Idempotency-Key": os.urandom(16).hex()}
                    data = json.dumps(body).encode()
                    async with session.post(urls.base + route, data=data, headers=headers) as resp:
                        reply: dict[str, Any] = json.loads(await resp.read())
                        assert resp.status in (200, 201), reply
                        return reply

                async def worker() -> None:
                    for path in left:
                        if threaded:
                            data = await asyncio.to_thread(path.read_bytes)
                        else:
                            data = path.read_bytes()
                        init = {"filename": path.name, "content_type": OCTET, "size": len(data)}
                        ticket = await call("/api/media/upload/init", init)
                        put = session.put(
                            ticket["upload_url"], data=data, headers=ticket["headers"]
                        )
                        async with put as resp:
                            assert resp.status == 200, await resp.text()
                        done = {"upload_id": ticket["upload_id"]}
                        if checksum:
                            done["sha256"] = hashlib.sha256(data).hexdigest()
                        await call("/api/media/upload/complete", done)

                await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

        asyncio.run(main())

    return upload


MANY_CLIENTS: dict[str, ManyClient] = {
    "gateway_async upload_many, checksum=True (default)": sdk_many(True),
    "raw aiohttp loop, blocking read, with sha256": raw_many(True),
    "gateway_async upload_many, checksum=False": sdk_many(False),
    "raw aiohttp loop, blocking read, no sha256": raw_many(False),
    "raw aiohttp loop, read in a worker thread, with sha256": raw_many(True, threaded=True),
}


def run_many(urls: SinkUrls, paths: list[Path], rounds: int) -> dict[str, list[Sample]]:
    for fn in MANY_CLIENTS.values():  # warm-up: imports, first connections
        fn(urls, paths[:100])
    results: dict[str, list[Sample]] = {name: [] for name in MANY_CLIENTS}
    for round_no in range(rounds):
        for name in rotated(list(MANY_CLIENTS), round_no):
            call = functools.partial(MANY_CLIENTS[name], urls, paths)
            results[name].append(measure(call, len(paths)))
    return results


def many_table(results: dict[str, list[Sample]]) -> str:
    lines = [
        "| client | files/s (median, min-max) | client CPU µs/file (median, min-max) |",
        "|---|---|---|",
    ]
    for name, rows in results.items():
        rate, cpu = [r.per_second for r in rows], [r.cpu_us_per_op for r in rows]
        lines.append(
            f"| {name} | {median(rate):,.0f} ({fmt_range(rate)}) "
            f"| {median(cpu):,.0f} ({fmt_range(cpu)}) |"
        )
    return "\n".join(lines)


def many_targets(results: dict[str, list[Sample]]) -> str:
    rate = {name: median([r.per_second for r in rows]) for name, rows in results.items()}
    cpu = {name: median([r.cpu_us_per_op for r in rows]) for name, rows in results.items()}
    names = list(MANY_CLIENTS)
    lines = []
    for sdk, raw in ((names[0], names[1]), (names[2], names[3])):
        lines.append(
            f"- {sdk} / {raw}: files/s {verdict(rate[sdk] / rate[raw], 0.9)}; "
            f"client CPU per file {cpu[sdk] / cpu[raw]:.2f} x raw"
        )
    sdk, threaded = names[0], names[4]
    lines.append(
        f"- for scale, {sdk} / {threaded}: files/s {rate[sdk] / rate[threaded]:.2f}; "
        f"client CPU per file {cpu[sdk] / cpu[threaded]:.2f} x"
    )
    return "\n".join(lines)


# -- memory during a big upload ------------------------------------------------------------


def rss_child(base: str, big: str, tiny: str) -> None:
    """In a fresh process: RSS when idle after a warm-up upload, then its peak during ``big``.

    Writing 5 to /proc/self/clear_refs resets the kernel's peak-RSS mark (VmHWM) to the
    current RSS, so VmHWM afterwards is the exact peak of the upload, with no sampling.
    """
    from gateway_async import Gateway

    async def main() -> dict[str, float]:
        async with Gateway(api_key=KEY, base_url=base) as gw:
            await gw.media.upload(tiny)
            reset_peak_rss()
            idle = status_mib("VmRSS")
            wall = time.perf_counter()
            ref = await gw.media.upload(big)
            wall = time.perf_counter() - wall
            peak = status_mib("VmHWM")
        return {"idle": idle, "peak": peak, "mb_s": ref.size / wall / 1e6}

    print(json.dumps(asyncio.run(main())))


def run_rss(urls: SinkUrls, big: Path, tiny: Path) -> dict[str, float]:
    cmd = [sys.executable, "-m", "benchmarks.uploads_bench", "--rss-child", urls.base]
    done = subprocess.run([*cmd, str(big), str(tiny)], capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"the RSS child failed:\n{done.stderr}")
    out = done.stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def rss_section(rss: dict[str, float], size_mib: int) -> str:
    growth = rss["peak"] - rss["idle"]
    return (
        f"### Client memory while uploading one {size_mib:,} MiB file (checksum=True)\n\n"
        "| idle RSS MiB (after a warm-up upload) | peak RSS MiB during the upload (VmHWM) "
        "| growth MiB | MB/s |\n|---|---|---|---|\n"
        f"| {rss['idle']:.1f} | {rss['peak']:.1f} | {growth:.1f} | {rss['mb_s']:,.0f} |\n\n"
        f"- peak RSS growth < 64 MiB: **{'met' if growth < 64 else 'missed'}** "
        f"({growth:.1f} MiB)"
    )


# -- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--big-rounds", type=int, help="rounds of the big file (--rounds)")
    parser.add_argument("--rss-size-mib", type=int, default=2048)
    parser.add_argument("--rss-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--big-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(*args.rss_child)
        return
    if args.big_child:
        big_child(*args.big_child)
        return
    big_rounds = args.big_rounds or args.rounds
    with (
        tempfile.TemporaryDirectory(prefix="gateway-uploads-bench-") as tmp,
        storage_sink() as urls,
    ):
        root = Path(tmp)
        big = write_random(root / "big.bin", args.size_mib * MIB)
        big_results = run_big(urls, big, big_rounds)
        big.unlink()
        small_dir = root / "small"
        small_dir.mkdir()
        paths = [write_random(small_dir / f"f{i:05d}.bin", SMALL_FILE) for i in range(args.files)]
        many_results = run_many(urls, paths, args.rounds)
        huge = write_random(root / "huge.bin", args.rss_size_mib * MIB)
        rss = run_rss(urls, huge, paths[0])
    print("## Uploads\n")
    print(f"### One {args.size_mib:,} MiB file, {big_rounds} rounds\n")
    print(big_table(big_results, args.size_mib * MIB))
    print("\nTargets:")
    print(big_targets(big_results))
    print(
        f"\n### {args.files:,} files of 100 KiB at concurrency {CONCURRENCY} "
        f"(init, PUT, complete each), {args.rounds} rounds\n"
    )
    print(many_table(many_results))
    print("\nTargets (ratios of medians):")
    print(many_targets(many_results))
    print()
    print(rss_section(rss, args.rss_size_mib))


if __name__ == "__main__":
    main()

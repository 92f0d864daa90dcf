"""A long-running ingest worker: paths arrive on a queue, a journal makes it restartable.

    find photos -name '*.png' | python examples/ingest_worker.py --scope photos --journal w.db

It reads paths (one per line) from stdin into an ``asyncio.Queue``; one ingest pulls from
that queue for as long as the worker lives. On SIGTERM (or SIGINT) it stops taking paths,
lets the items already in flight finish, prints a summary and exits 0; whatever was left
in the queue is picked up by the journal on the next start.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from gateway_async import Gateway
from gateway_async.pipeline import IngestItem, IngestSummary, Journal

MODEL = "demo-image-embed"


async def paths_from(queue: asyncio.Queue[Path | None]) -> AsyncIterator[Path]:
    """The queue as a source; None is the end of input."""
    while (path := await queue.get()) is not None:
        yield path


async def run_worker(
    gw: Gateway,
    queue: asyncio.Queue[Path | None],
    *,
    scope: str,
    journal: Journal,
    stopping: asyncio.Event,
    on_item: Callable[[IngestItem], None] | None = None,
) -> IngestSummary:
    """Ingest paths from ``queue`` until it ends or ``stopping`` is set (graceful stop)."""
    ingest = gw.ingest(paths_from(queue), model=MODEL, scope=scope, journal=journal)
    watcher = asyncio.create_task(_stop_when(stopping, ingest.stop))
    try:
        async with ingest:
            async for item in ingest:
                status = "skipped" if item.skipped else "indexed" if item.ok else "failed"
                print(f"{status} {item.source}", flush=True)
                if on_item is not None:
                    on_item(item)
    finally:
        watcher.cancel()
    return ingest.summary


async def _stop_when(event: asyncio.Event, stop: Callable[[], None]) -> None:
    await event.wait()
    stop()


async def _read_stdin(queue: asyncio.Queue[Path | None]) -> None:
    """Feed stdin lines into the queue (a pipe reader: cancellable, unlike a thread)."""
    lines = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(lines), sys.stdin)
    while line := await lines.readline():
        if line.strip():
            await queue.put(Path(line.decode().strip()))
    await queue.put(None)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scope", default="worker")
    parser.add_argument("--journal", type=Path, default=Path("ingest_worker.db"))
    args = parser.parse_args(argv)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    queue: asyncio.Queue[Path | None] = asyncio.Queue(maxsize=1000)
    reader = asyncio.create_task(_read_stdin(queue))
    async with Gateway() as gw, await Journal.open(args.journal) as journal:
        print("ready", flush=True)
        summary = await run_worker(gw, queue, scope=args.scope, journal=journal, stopping=stopping)
    reader.cancel()
    print(f"summary: {summary}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

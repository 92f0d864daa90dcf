"""A process that ingests a folder under a job, for the fresh-machine tests.

``python -m tests.identity._child --base-url URL --api-key KEY --folder DIR --job NAME
[--journal PATH] [--kill-after N]`` ingests every file of DIR (sorted) and prints one JSON
line per item; with ``--kill-after`` it SIGKILLs itself once N items were yielded (a
container that vanished mid-job).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from pathlib import Path

from gateway_async import Gateway, RetryPolicy

MODEL, SCOPE = "demo-image-embed", "fresh"


async def ingest(args: argparse.Namespace, files: list[Path]) -> None:
    retry = RetryPolicy(max_retries=5, base_delay=0.0, max_delay=0.0)
    async with Gateway(api_key=args.api_key, base_url=args.base_url, retry=retry) as gw:
        ingest = gw.ingest(files, model=MODEL, scope=SCOPE, job=args.job, journal=args.journal)
        seen = 0
        async for item in ingest:
            error = None if item.error is None else f"{type(item.error).__name__}: {item.error}"
            line = {"source": Path(item.source).name, "skipped": item.skipped, "error": error}
            print(json.dumps(line), flush=True)
            seen += 1
            if args.kill_after is not None and seen >= args.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--base-url", "--api-key", "--folder", "--job"):
        parser.add_argument(name, required=True)
    parser.add_argument("--journal")
    parser.add_argument("--kill-after", type=int)
    args = parser.parse_args()
    asyncio.run(ingest(args, sorted(Path(args.folder).iterdir())))


if __name__ == "__main__":
    main()

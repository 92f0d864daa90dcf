"""Index a folder with a journal and a spend cap, then search with one of its files.

    python examples/batch_index.py photos/ --scope photos --journal photos.db --max-spend 5

It prints a line per file as it is indexed. Run it twice: the second run skips everything
the first one finished (the journal). Ctrl-C stops it cleanly with one line on stderr and
exit status 130; rerun with the same --journal to resume without running or paying twice.
Configuration comes from GATEWAY_API_KEY / GATEWAY_BASE_URL (try `gateway-async emulator`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway_async import Gateway
from gateway_async.pipeline import IngestSummary

MODEL = "demo-image-embed"


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


async def index_folder(
    gw: Gateway, folder: Path, *, scope: str, journal: Path, max_spend: Decimal | None
) -> IngestSummary:
    """Upload and index every file under ``folder``; failures are printed, not raised."""
    files = await asyncio.to_thread(files_in, folder)
    ingest = gw.ingest(
        files,
        model=MODEL,
        scope=scope,
        journal=journal,
        max_spend=max_spend,
        params=lambda path: {"metadata": {"file": path.name}},
    )
    async with ingest:
        async for item in ingest:
            if item.ok:
                print(f"{'skipped' if item.skipped else 'indexed'} {item.source}", flush=True)
            else:
                print(f"failed: {item.source}: {item.error or item.run}", flush=True)
    return ingest.summary


async def search_like(gw: Gateway, path: Path, *, scope: str, top_k: int = 5) -> list[Any]:
    """The matches of the image at ``path`` (uploaded for the query) in ``scope``."""
    ref = await gw.media.upload(path)
    run = await gw.runs.create(
        model=MODEL, mode="search", scope=scope, input={"image": ref}, params={"top_k": top_k}
    )
    matches: list[Any] = run.output["matches"]
    return matches


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--scope", default="batch")
    parser.add_argument("--journal", type=Path, default=Path("batch_index.db"))
    parser.add_argument("--max-spend", type=Decimal)
    args = parser.parse_args(argv)
    async with Gateway() as gw:
        summary = await index_folder(
            gw, args.folder, scope=args.scope, journal=args.journal, max_spend=args.max_spend
        )
        print(summary)
        first = files_in(args.folder)[0]
        for match in await search_like(gw, first, scope=args.scope):
            print(f"{match['score']:.4f}  {match['metadata']}")


def run_script() -> int:
    """Ctrl-C cancels the ingest (its journal stays consistent) and says how to resume."""
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("\ninterrupted: rerun with the same --journal to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(run_script())

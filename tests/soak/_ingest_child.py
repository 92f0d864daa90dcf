"""What the soak ingests and how, shared by the tests and by the process they SIGKILL.

Run as ``python -m tests.soak._ingest_child --base-url URL --api-key KEY --journal PATH
--data DIR``: it ingests every file of DIR (sorted by name) with the journal, then prints
one JSON line per item and a last line with the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from gateway_async import Gateway, RetryPolicy
from gateway_async.pipeline import IngestItem, IngestSummary

MODEL = "demo-image-embed"  # the demo model whose input (``image``) is a media_ref
SCOPE = "soak"
PRICE = Decimal("0.0010")
FAULTS = (
    "503=0.1,429=0.05,reset=0.02,truncated=0.01,lost=0.02,latency=0-0.02,seed=7,retry_after=0"
)
# Small waits, and enough retries that ~17% of failing attempts never exhaust them.
RETRY = RetryPolicy(max_retries=12, base_delay=0.002, max_delay=0.02)
UPLOAD_CONCURRENCY = 16
RUN_CONCURRENCY = 16


@attrs.frozen(kw_only=True)
class Outcome:
    """One ingested item, reduced to what survives a trip through JSON."""

    source: str
    media_ref: str | None
    sha256: str | None
    run_id: str | None
    skipped: bool
    error: str | None

    @classmethod
    def of(cls, item: IngestItem) -> Outcome:
        media, run = item.media_ref, item.run
        error = None if item.ok else repr(item.error or (run.error if run else None))
        return cls(
            source=str(item.source),
            media_ref=None if media is None else media.media_ref,
            sha256=None if media is None else media.sha256,
            run_id=None if run is None else run.id,
            skipped=item.skipped,
            error=error,
        )


async def ingest_files(
    base_url: str, api_key: str, files: Sequence[Path], journal: Path
) -> tuple[list[Outcome], IngestSummary]:
    """Ingest ``files`` into the soak scope with ``journal``; the client is closed after."""
    async with Gateway(api_key=api_key, base_url=base_url, retry=RETRY) as gw:
        ingest = gw.ingest(
            files,
            model=MODEL,
            mode="index",
            scope=SCOPE,
            input_field="image",
            upload_concurrency=UPLOAD_CONCURRENCY,
            run_concurrency=RUN_CONCURRENCY,
            journal=journal,
        )
        async with ingest:
            outcomes = [Outcome.of(item) async for item in ingest]
    return outcomes, ingest.summary


def parse_output(text: str) -> tuple[list[Outcome], dict[str, Any]]:
    """The outcomes and the summary that :func:`main` printed."""
    *lines, last = text.splitlines()
    return [Outcome(**json.loads(line)) for line in lines], json.loads(last)


async def _main(args: argparse.Namespace, files: Sequence[Path]) -> None:
    outcomes, summary = await ingest_files(args.base_url, args.api_key, files, Path(args.journal))
    for outcome in outcomes:
        print(json.dumps(attrs.asdict(outcome)))
    print(json.dumps(attrs.asdict(summary), default=str))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--base-url", "--api-key", "--journal", "--data"):
        parser.add_argument(name, required=True)
    args = parser.parse_args(argv)
    asyncio.run(_main(args, sorted(Path(args.data).iterdir())))


if __name__ == "__main__":
    main(sys.argv[1:])

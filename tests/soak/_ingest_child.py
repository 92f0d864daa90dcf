"""What the soak ingests and how, shared by the tests and by the process they SIGKILL.

Run as ``python -m tests.soak._ingest_child --base-url URL --api-key KEY --journal PATH
--data DIR [--max-spend CREDITS]``: it ingests every file of DIR (sorted by name) with the
journal, then prints one JSON line per item and a last line with the summary.

The test-only seam ``GATEWAY_TEST_KILL_AT=<journal method>:<before|after>`` (e.g.
``begin_run:after``) makes the process SIGKILL itself at the first call of that
``Journal`` method, just before or just after it: a crash at a chosen step, no sleeps.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from gateway_async import Gateway, RetryPolicy
from gateway_async.pipeline import IngestItem, IngestSummary, Journal

MODEL = "demo-image-embed"  # the demo model whose input (``image``) is a media_ref
SCOPE = "soak"
PRICE = Decimal("0.0010")
FAULTS = "503=0.1,429=0.05,reset=0.02,truncated=0.01,lost=0.02,latency=0-0.02,seed=7,retry_after=0"
# Small waits, and enough retries that ~17% of failing attempts never exhaust them.
RETRY = RetryPolicy(max_retries=12, base_delay=0.002, max_delay=0.02)
UPLOAD_CONCURRENCY = 16
RUN_CONCURRENCY = 16
KILL_ENV = "GATEWAY_TEST_KILL_AT"
ROOT = Path(__file__).resolve().parents[2]


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
    base_url: str,
    api_key: str,
    files: Sequence[Path],
    journal: Path,
    max_spend: Decimal | None = None,
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
            max_spend=max_spend,
        )
        async with ingest:
            outcomes = [Outcome.of(item) async for item in ingest]
    return outcomes, ingest.summary


def parse_output(text: str) -> tuple[list[Outcome], dict[str, Any]]:
    """The outcomes and the summary that :func:`main` printed."""
    *lines, last = text.splitlines()
    return [Outcome(**json.loads(line)) for line in lines], json.loads(last)


async def spawn(
    base_url: str,
    api_key: str,
    journal: Path,
    data: Path,
    *,
    max_spend: Decimal | None = None,
    kill_at: str | None = None,
) -> asyncio.subprocess.Process:
    """Start this module as a child process (warnings as errors), its output piped."""
    extra = () if max_spend is None else ("--max-spend", str(max_spend))
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    if kill_at is not None:
        env[KILL_ENV] = kill_at
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-m",
        "tests.soak._ingest_child",
        *("--base-url", base_url, "--api-key", api_key),
        *("--journal", str(journal), "--data", str(data), *extra),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def arm_kill_point(spec: str) -> None:
    """Make the first call of ``Journal.<method>`` SIGKILL this process before or after it."""
    method, _, when = spec.partition(":")
    original: Callable[..., Any] = getattr(Journal, method)
    if when not in ("before", "after"):
        raise SystemExit(f"{KILL_ENV}: expected <journal method>:<before|after>, got {spec!r}")

    @functools.wraps(original)
    async def killing(*args: Any, **kwargs: Any) -> Any:
        if when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = await original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(Journal, method, killing)


async def _main(args: argparse.Namespace, files: Sequence[Path]) -> None:
    max_spend = None if args.max_spend is None else Decimal(args.max_spend)
    outcomes, summary = await ingest_files(
        args.base_url, args.api_key, files, Path(args.journal), max_spend
    )
    for outcome in outcomes:
        print(json.dumps(attrs.asdict(outcome)))
    print(json.dumps(attrs.asdict(summary), default=str))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--base-url", "--api-key", "--journal", "--data"):
        parser.add_argument(name, required=True)
    parser.add_argument("--max-spend")
    args = parser.parse_args(argv)
    if kill_at := os.environ.get(KILL_ENV):
        arm_kill_point(kill_at)
    asyncio.run(_main(args, sorted(Path(args.data).iterdir())))


if __name__ == "__main__":
    main(sys.argv[1:])

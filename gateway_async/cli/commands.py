"""The CLI's commands, each ``async (gw, args) -> exit code``, using only the public API."""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import Gateway, GatewayError, MarketplaceModel, MediaRef, UploadProgress
from ..pipeline import Ingest, IngestEvent, IngestItem, IngestSummary
from .main import UsageError
from .output import Progress, dump_json, human_bytes, jsonable, print_table

__all__ = [
    "bytes_to",
    "collect_files",
    "drain",
    "index",
    "models",
    "run",
    "search",
    "summary_lines",
    "upload",
    "usage",
    "wallet",
]


# -- helpers -------------------------------------------------------------------------------


def _json_arg(text: str | None, flag: str, *, obj: bool = False) -> Any:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: not valid JSON ({exc})") from None
    if obj and not isinstance(value, dict):
        raise UsageError(f"{flag}: expected a JSON object")
    return value


def _when(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag}: expected an RFC 3339 time, e.g. 2026-11-24T12:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def collect_files(paths: list[str], pattern: str = "*") -> list[Path]:
    """Files named by ``paths``, directories walked recursively (sorted), names matching."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = (p for p in path.rglob("*") if p.is_file() and fnmatch.fnmatch(p.name, pattern))
            files.extend(sorted(found))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or directory: {raw}")
    return files


def _takes_metadata(model: MarketplaceModel) -> bool:
    properties = model.params_schema.get("properties")
    return isinstance(properties, dict) and "metadata" in properties


def _path_metadata(source: Any) -> dict[str, Any]:
    return {"metadata": {"path": os.fspath(source)}}


def summary_lines(summary: IngestSummary) -> list[str]:
    """A short human account of an ingest."""
    lines = [
        f"{summary.succeeded} indexed, {summary.skipped} already done, {summary.failed} failed"
        + (f", {summary.not_run} not run" if summary.not_run else "")
        + f" (of {summary.total}) in {summary.duration:.2f} s",
        f"uploaded {summary.uploaded} ({human_bytes(summary.bytes)}), reused {summary.reused}; "
        f"{summary.credits} credits",
    ]
    if summary.stopped == "budget":
        lines.append("stopped: the spend cap (--max-spend) was reached")
    return lines


def _item_json(item: IngestItem) -> dict[str, Any]:
    return {
        "index": item.index,
        "source": os.fspath(item.source) if isinstance(item.source, str | Path) else None,
        "ok": item.ok,
        "skipped": item.skipped,
        "media_ref": item.media_ref.media_ref if item.media_ref else None,
        "run": jsonable(item.run),
        "error": jsonable(item.error),
    }


# -- commands ------------------------------------------------------------------------------


async def models(gw: Gateway, args: argparse.Namespace) -> int:
    if args.models_command == "show":
        model = await gw.marketplace.get_model(args.slug)
        if args.json:
            dump_json(model)
        else:
            print_table(["field", "value"], jsonable(model).items())
        return 0
    found = [m async for m in gw.marketplace.list_models(args.q)]
    if args.json:
        dump_json(found)
    else:
        rows = [(m.slug, ",".join(m.modes), m.price_per_run, m.name) for m in found]
        print_table(["slug", "modes", "price", "name"], rows)
    return 0


async def run(gw: Gateway, args: argparse.Namespace) -> int:
    result = await gw.runs.create(
        model=args.model,
        input=_json_arg(args.input, "--input"),
        mode=args.mode,
        scope=args.scope,
        params=_json_arg(args.params, "--params", obj=True),
    )
    if args.json:
        dump_json(result)
    else:
        print(f"{result.id} {result.status} ({result.usage.credits} credits)")
        print(json.dumps(jsonable(result.output), indent=2))
    if not result.succeeded:
        print(f"run failed: {jsonable(result.error)}", file=sys.stderr)
        return 1
    return 0


async def upload(gw: Gateway, args: argparse.Namespace) -> int:
    files = await asyncio.to_thread(collect_files, args.paths, args.glob)
    progress = Progress("upload", total=len(files))
    sent: dict[int | None, int] = {}

    def on_progress(event: UploadProgress) -> None:
        """Move the bar per chunk, not per finished file."""
        progress.advance(nbytes=event.bytes_sent - sent.get(event.index, 0))
        sent[event.index] = event.bytes_sent

    results = await gw.media.upload_many(
        files, concurrency=args.concurrency, on_progress=on_progress
    )
    failed = 0
    rows: list[tuple[object, ...]] = []
    for path, result in zip(files, results, strict=True):
        if isinstance(result, MediaRef):
            progress.advance(1)
            rows.append((path, result.media_ref, result.size))
        else:
            failed += 1
            progress.advance(1, failed=1)
            rows.append((path, "-", result))
        if args.json:
            dump_json({"source": str(path), "result": result}, indent=None)
    progress.close()
    if not args.json:
        print_table(["path", "media_ref", "size / error"], rows)
    return 1 if failed else 0


async def index(gw: Gateway, args: argparse.Namespace) -> int:
    files = await asyncio.to_thread(collect_files, args.paths, args.glob)
    model = await gw.marketplace.get_model(args.model)
    progress = Progress("index", total=len(files))
    ingest = gw.ingest(
        files,
        model=args.model,
        mode=args.mode,
        scope=args.scope,
        input_field=args.input_field,
        params=_path_metadata if _takes_metadata(model) else None,
        run_concurrency=args.concurrency,
        journal=args.journal,
        max_spend=args.max_spend,
        on_event=bytes_to(progress),
    )
    summary = await drain(ingest, progress, args.json)
    if args.json:
        dump_json({"summary": summary}, indent=None)
    else:
        print("\n".join(summary_lines(summary)))
    return 0 if summary.failed == 0 and summary.not_run == 0 else 1


def bytes_to(progress: Progress) -> Callable[[IngestEvent], None]:
    """An ``on_event`` that adds uploaded bytes to a progress bar."""

    def on_event(event: IngestEvent) -> None:
        if event.kind == "uploaded":
            progress.advance(nbytes=event.nbytes)

    return on_event


async def drain(ingest: Ingest, progress: Progress, as_json: bool) -> IngestSummary:
    """Iterate an ingest with a progress bar; failures are told as they happen."""
    async with ingest:
        async for item in ingest:
            progress.advance(1, failed=0 if item.ok else 1)
            if as_json:
                dump_json(_item_json(item), indent=None)
            elif not item.ok:
                progress.note(f"failed: {item.source}: {item.error or jsonable(item.run)}")
    progress.close()
    return ingest.summary


async def search(gw: Gateway, args: argparse.Namespace) -> int:
    params = {"top_k": args.top_k}
    if args.text is not None:
        result = await gw.runs.create(
            model=args.model,
            mode="search",
            scope=args.scope,
            input={"text": args.text},
            params=params,
        )
    else:
        ingest = gw.ingest(
            [args.file], model=args.model, mode="search", scope=args.scope, params=params
        )
        async with ingest:
            item = await anext(ingest)
        if item.run is None:
            raise item.error or GatewayError(f"search with {args.file} did not run")
        result = item.run
    matches = result.output.get("matches", []) if isinstance(result.output, dict) else []
    if args.json:
        dump_json(result)
    else:
        rows = [
            (rank, f"{m.get('score', 0):.4f}", m.get("id"), m.get("media_ref"), m.get("metadata"))
            for rank, m in enumerate(matches, 1)
        ]
        print_table(["#", "score", "id", "media_ref", "metadata"], rows)
    return 0 if result.succeeded else 1


async def wallet(gw: Gateway, args: argparse.Namespace) -> int:
    found = await gw.billing.wallet()
    if args.json:
        dump_json(found)
    else:
        print(f"{found.balance} {found.currency} (workspace {found.workspace_id})")
    return 0


async def usage(gw: Gateway, args: argparse.Namespace) -> int:
    found = await gw.billing.usage_summary(_when(args.start, "--start"), _when(args.end, "--end"))
    if args.json:
        dump_json(found)
        return 0
    print(f"{found.total_runs} runs, {found.total_credits} credits ({found.start} to {found.end})")
    if found.by_model:
        print_table(
            ["model", "runs", "credits"], [(m.model, m.runs, m.credits) for m in found.by_model]
        )
    return 0

"""The CLI's commands, each ``async (gw, args) -> exit code``, using only the public API.

What every command guarantees: bad flags fail in one line before any byte is sent (exit
2); results print as they finish (``--json``: one line each); a failure that dooms the rest
(401, 402, 403) is one line, not one per file; Ctrl-C reports what was done.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import json
import os
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import attrs

from .. import (
    AuthenticationError,
    Gateway,
    GatewayError,
    InsufficientFundsError,
    InvalidRequestError,
    MarketplaceModel,
    MediaRef,
    PermissionDeniedError,
    Run,
    RunRequest,
    UploadProgress,
)
from .. import _schema as schema
from .._journal import journal_files
from .._pipeline._settings import check_journal
from .._pipeline._sources import file_sha256
from ..pipeline import Ingest, IngestEvent, IngestItem, IngestSummary, Journal
from ._common import UsageError, error_line, on_interrupt, one_line, rerun
from .output import Progress, dump_json, human_bytes, json_text, jsonable, print_table

__all__ = [
    "BudgetGate",
    "collect_files",
    "drain",
    "index",
    "models",
    "progress_events",
    "run",
    "search",
    "summary_lines",
    "upload",
    "usage",
    "wallet",
]

T = TypeVar("T")
R = TypeVar("R")
DOOMING = (AuthenticationError, PermissionDeniedError, InsufficientFundsError)


# -- arguments ------------------------------------------------------------------------------


def _json_arg(text: str | None, flag: str, *, obj: bool = False) -> Any:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: not valid JSON ({exc})") from None
    if obj and not isinstance(value, dict):
        raise UsageError(f'{flag}: expected a JSON object, e.g. \'{{"text": "hello"}}\'')
    return value


def _when(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag}: expected an RFC 3339 time, e.g. 2026-11-24T12:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _check_run(args: argparse.Namespace, mode: str) -> None:
    """The SDK's own request rules on the flags (e.g. ``--scope``), before any byte is sent."""
    RunRequest(model=args.model, mode=mode, scope=args.scope, input={})


def media_field(model: MarketplaceModel, given: str | None) -> str:
    """The input field that takes a media_ref (the SDK's rule, ``gw.ingest`` applies it
    too); a UsageError in CLI words for a model that takes none."""
    try:
        return schema.media_field(model.input_schema, model.slug, given)
    except InvalidRequestError:
        if schema.media_fields(model.input_schema) or not model.input_schema.get("properties"):
            raise  # main prints it in flag words (--input-field), exit 2
    takes = ", ".join(f"{name!r}" for name in model.input_schema["properties"])
    raise UsageError(
        f"--model {model.slug} takes {takes}, not files: index files with a media model "
        "(e.g. demo-image-embed), or use `run --input` for text"
    )


# -- files ----------------------------------------------------------------------------------


def collect_files(
    paths: Sequence[str], pattern: str = "*", journal: str | None = None
) -> tuple[list[Path], list[Path]]:
    """Files named by ``paths``, directories walked recursively (sorted), names matching;
    and the dangling symlinks met on the way (skipped, to be reported).

    The ``journal`` and its side files are never sources, even inside a walked folder: the
    journal changes on every run, so each rerun would upload and pay for it again.
    """
    own = {os.path.realpath(name) for name in journal_files(journal)} if journal else set()
    files: list[Path] = []
    dangling: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                if fnmatch.fnmatch(found.name, pattern):
                    _sort_into(found, files, dangling)
        elif path.is_file():
            files.append(path)
        elif path.is_symlink():
            dangling.append(path)
        else:
            raise FileNotFoundError(f"no such file or directory: {raw}")
    if own:
        files = [path for path in files if os.path.realpath(path) not in own]
    return files, dangling


def _sort_into(path: Path, files: list[Path], dangling: list[Path]) -> None:
    if path.is_file():
        files.append(path)
    elif path.is_symlink() and not path.exists():
        dangling.append(path)


async def _files(args: argparse.Namespace) -> list[Path]:
    """The command's files; dangling symlinks are reported; none at all is an error."""
    files, dangling = await asyncio.to_thread(collect_files, args.paths, args.glob, args.journal)
    for link in dangling:
        print(f"skipped dangling symlink: {link}", file=sys.stderr)
    if not files:
        where = " ".join(args.paths)
        raise FileNotFoundError(f"no files found in {where} (--glob {args.glob!r})")
    return files


async def finished(
    items: Sequence[T], fn: Callable[[T], Awaitable[R]], concurrency: int
) -> AsyncGenerator[tuple[T, R | Exception], None]:
    """``fn`` over ``items``, ``concurrency`` at once, each outcome as soon as it lands.

    Closing the iterator early (an error, Ctrl-C) cancels the work still running.
    """
    queue: asyncio.Queue[tuple[T, R | Exception]] = asyncio.Queue()
    todo = iter(items)

    async def worker() -> None:
        for item in todo:
            try:
                outcome: R | Exception = await fn(item)
            except Exception as exc:  # an outcome: reported (or re-raised) by the consumer
                outcome = exc
            await queue.put((item, outcome))

    workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(items)))]
    try:
        for _ in items:
            yield await queue.get()
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


# -- output helpers -------------------------------------------------------------------------


def summary_lines(
    summary: IngestSummary, *, total: int | None = None, withheld: int = 0
) -> list[str]:
    """A short human account of an ingest; ``total`` counts every file given, run or not."""
    total = summary.total + withheld if total is None else total
    not_run = total - summary.succeeded - summary.skipped - summary.failed
    lines = [
        f"{summary.succeeded} indexed, {summary.skipped} already done, {summary.failed} failed"
        + (f", {not_run} not run" if not_run else "")
        + f" (of {total}) in {summary.duration:.2f} s",
        f"uploaded {summary.uploaded} ({human_bytes(summary.bytes)}), reused {summary.reused}; "
        f"{summary.credits} credits",
    ]
    if summary.stopped == "budget" or withheld:
        lines.append("stopped: the spend cap (--max-spend) was reached")
    return lines


def _resume_hint(journal: str | None, job: str | None = None) -> str:
    if journal:
        return "rerun with the same --journal to resume"
    if job:
        return "rerun with the same --job to resume (within 24 h; add --journal for longer)"
    return "nothing was journaled: rerun with --journal FILE to make the next run resumable"


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


def run_failure(run: Run) -> str:
    """``model_error: boom`` rather than a dict."""
    if run.error is None:
        return f"status {run.status}"
    return one_line(f"{run.error.code}: {run.error.message}")


def _item_failure(item: IngestItem) -> str:
    if item.error is not None:
        return one_line(item.error)
    return run_failure(item.run) if item.run is not None else "did not run"


# -- the spend cap --------------------------------------------------------------------------


@attrs.define
class BudgetGate:
    """Hands the ingest a file only while the spend cap can still run it, so no file is
    uploaded that the budget cannot index. ``runs`` is how many runs the cap pays for.

    A handed-out file is *pending* until the ingest says what became of it: skipped (the
    journal had it: free) or uploaded/reused (it will run: paid) or failed.
    """

    runs: int
    handed: int = 0
    paid: int = 0
    withheld: int = 0
    _settled: set[int] = attrs.field(factory=set)
    _changed: asyncio.Event = attrs.field(factory=asyncio.Event)

    @classmethod
    def of(cls, max_spend: Decimal | None, price: Decimal) -> BudgetGate | None:
        """The gate of ``--max-spend`` (None: no cap, or free runs)."""
        if max_spend is None or price <= 0:
            return None
        return cls(int(max_spend / price))

    async def sources(self, files: Sequence[Path]) -> AsyncIterator[Path]:
        for position, path in enumerate(files):
            while self.paid + self.handed - len(self._settled) >= self.runs:
                if self.handed == len(self._settled):
                    self.withheld = len(files) - position
                    return
                self._changed.clear()
                await self._changed.wait()
            self.handed += 1
            yield path

    def on_event(self, event: IngestEvent) -> None:
        if event.kind in ("uploaded", "reused") and event.index not in self._settled:
            self.paid += 1
        if event.kind in ("uploaded", "reused", "skipped", "failed"):
            self._settled.add(event.index)
            self._changed.set()


def progress_events(
    progress: Progress, gate: BudgetGate | None = None
) -> Callable[[IngestEvent], None]:
    """An ``on_event`` that adds uploaded bytes to the bar and tells the gate."""

    def on_event(event: IngestEvent) -> None:
        if event.kind == "uploaded":
            progress.advance(nbytes=event.nbytes)
        if gate is not None:
            gate.on_event(event)

    return on_event


async def drain(ingest: Ingest, progress: Progress, as_json: bool) -> IngestSummary:
    """Iterate an ingest with a progress bar; each item is told as it finishes."""
    async with progress, ingest:
        async for item in ingest:
            progress.advance(1, failed=0 if item.ok else 1)
            if as_json:
                dump_json(_item_json(item), indent=None)
            elif not item.ok:
                progress.note(f"failed: {item.source}: {_item_failure(item)}")
    return ingest.summary


# -- commands -------------------------------------------------------------------------------


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
        input=_json_arg(args.input, "--input", obj=True),
        mode=args.mode,
        scope=args.scope,
        params=_json_arg(args.params, "--params", obj=True),
    )
    if args.json:
        dump_json(result)
    else:
        print(f"{result.id} {result.status} ({result.usage.credits} credits)")
        print(json_text(result.output))
    if not result.succeeded:
        print(f"run failed: {run_failure(result)}", file=sys.stderr)
        return 1
    return 0


@attrs.frozen
class _Journaled:
    """A file the journal had uploaded before: its media_ref, and no request made."""

    media: MediaRef


async def upload(gw: Gateway, args: argparse.Namespace) -> int:
    files = await _files(args)
    if args.journal:
        check_journal(args.journal)
    progress = Progress("upload", total=len(files), enabled=not args.json)
    rows: list[tuple[object, ...]] = []
    on_interrupt(args, lambda: _upload_report(progress, len(files), args))
    async with contextlib.AsyncExitStack() as stack:
        journal = (
            await stack.enter_async_context(await Journal.open(args.journal))
            if args.journal
            else None
        )
        if journal is not None:  # its records mean nothing on another Gateway or job
            wallet = await gw.billing.wallet()
            await journal.bind(str(gw.base_url), wallet.workspace_id, args.job or "")
        one = _upload_one(gw, args, progress, journal)
        await stack.enter_async_context(progress)
        outcomes = await stack.enter_async_context(
            contextlib.aclosing(finished(files, one, args.concurrency))
        )
        try:
            async for path, result in outcomes:
                rows.append(_uploaded(path, result, progress, args.json))
        except asyncio.CancelledError:  # Ctrl-C: what finished is kept, refs and all
            if not args.json:
                print_table(["path", "media_ref", "size / error"], rows)
            raise
        except InsufficientFundsError as exc:
            if not args.json:
                print_table(["path", "media_ref", "size / error"], rows)
            print(
                error_line(exc),
                *_upload_report(progress, len(files), args, exc),
                sep="\n",
                file=sys.stderr,
            )
            return 1
    if not args.json:
        print_table(["path", "media_ref", "size / error"], rows)
    return 1 if progress.failed else 0


def _upload_one(
    gw: Gateway, args: argparse.Namespace, progress: Progress, journal: Journal | None
) -> Callable[[Path], Awaitable[MediaRef | _Journaled]]:
    """One file: skipped if the journal holds its content (hashed here: the journal is a
    cache by content, never by path or mtime), else uploaded (named by content with
    ``--job``) and then journaled."""

    async def one(path: Path) -> MediaRef | _Journaled:
        if journal is not None:
            known = await journal.media_for(await asyncio.to_thread(file_sha256, str(path)))
            if known is not None:
                return _Journaled(known)
        sent = 0

        def on_progress(event: UploadProgress) -> None:
            nonlocal sent
            progress.advance(nbytes=event.bytes_sent - sent)
            sent = event.bytes_sent

        media = await gw.media.upload(path, on_progress=on_progress, job=args.job)
        if journal is not None and media.sha256 is not None:
            await journal.remember(media)
        return media

    return one


def _upload_report(
    progress: Progress, total: int, args: argparse.Namespace, cause: Exception | None = None
) -> list[str]:
    """What an interrupted or refused upload tells: how far it got, how to go on."""
    done = progress.done - progress.failed
    lines = [f"{done} of {total} files uploaded, {progress.failed} failed"]
    if cause is not None:
        lines.append(f"top up the wallet, then rerun: {rerun(args)}")
    if args.journal:
        lines.append("rerun with the same --journal to resume")
    elif args.job:
        lines.append("rerun with the same --job: what was uploaded is not sent again")
    else:
        lines.append(
            "nothing was journaled: rerun with --journal FILE to make the next run resumable"
        )
    return lines


def _uploaded(
    path: Path, result: MediaRef | _Journaled | Exception, progress: Progress, as_json: bool
) -> tuple[object, ...]:
    """Tell one finished upload; a failure that dooms every other one is raised."""
    journaled = isinstance(result, _Journaled)
    if isinstance(result, _Journaled):
        result = result.media
    if isinstance(result, DOOMING) or not isinstance(result, MediaRef | GatewayError | OSError):
        raise result
    failed = not isinstance(result, MediaRef)
    progress.advance(1, failed=int(failed))
    if as_json:
        line: dict[str, Any] = {"source": str(path), "result": result}
        if journaled:
            line["journaled"] = True
        dump_json(line, indent=None)
    elif failed:
        progress.note(f"failed: {path}: {one_line(result)}")
    if isinstance(result, MediaRef):
        return (path, result.media_ref, result.size)
    return (path, "-", one_line(result))


async def index(gw: Gateway, args: argparse.Namespace) -> int:
    _check_run(args, args.mode)
    model = await gw.marketplace.cached_model(args.model)
    field = media_field(model, args.input_field)
    files = await _files(args)
    gate = BudgetGate.of(args.max_spend, model.price_per_run)
    progress = Progress("index", total=len(files), enabled=not args.json)
    ingest = gw.ingest(
        gate.sources(files) if gate else files,
        model=args.model,
        mode=args.mode,
        scope=args.scope,
        input_field=field,
        params=_path_metadata if _takes_metadata(model) else None,
        run_concurrency=args.concurrency,
        journal=args.journal,
        job=args.job,
        max_spend=args.max_spend,
        on_event=progress_events(progress, gate),
    )
    on_interrupt(
        args,
        lambda: [
            *summary_lines(ingest.summary, total=len(files)),
            _resume_hint(args.journal, args.job),
        ],
    )
    try:
        summary = await drain(ingest, progress, args.json)
    except InsufficientFundsError as exc:  # the wallet ran dry: what was done, how to go on
        _tell_summary(ingest.summary, len(files), 0, args.json)
        print(
            error_line(exc),
            _go_on(args, "top up the wallet, then rerun"),
            sep="\n",
            file=sys.stderr,
        )
        return 1
    withheld = gate.withheld if gate else 0
    _tell_summary(summary, len(files), withheld, args.json)
    if summary.stopped == "budget" or withheld:
        print(_go_on(args, "raise --max-spend or wait, then rerun"), file=sys.stderr)
    return 0 if summary.succeeded + summary.skipped == len(files) else 1


def _tell_summary(summary: IngestSummary, total: int, withheld: int, as_json: bool) -> None:
    if as_json:
        dump_json({"summary": summary, "total": total, "withheld": withheld}, indent=None)
    else:
        print("\n".join(summary_lines(summary, total=total, withheld=withheld)))


def _go_on(args: argparse.Namespace, what: str) -> str:
    """The exact command that picks up where this one stopped (it needs a journal)."""
    if args.journal:
        return f"{what}: {rerun(args)}"
    return _resume_hint(None)


def _takes_metadata(model: MarketplaceModel) -> bool:
    properties = model.params_schema.get("properties")
    return isinstance(properties, dict) and "metadata" in properties


def _path_metadata(source: Any) -> dict[str, Any]:
    return {"metadata": {"path": os.fspath(source)}}


async def search(gw: Gateway, args: argparse.Namespace) -> int:
    _check_run(args, "search")
    params = {"top_k": args.top_k}
    if args.text is not None:
        query: dict[str, Any] = {"text": args.text}
    else:
        if not await asyncio.to_thread(Path(args.file).is_file):
            raise UsageError(f"--file: no such file: {args.file}")
        field = media_field(await gw.marketplace.cached_model(args.model), None)
        query = {field: await gw.media.upload(Path(args.file))}
    result = await gw.runs.create(
        model=args.model, mode="search", scope=args.scope, input=query, params=params
    )
    if not result.succeeded:
        print(f"run failed: {run_failure(result)}", file=sys.stderr)
        return 1
    matches = result.output.get("matches", []) if isinstance(result.output, dict) else []
    if args.json:
        dump_json(result)
    elif not matches:
        print(f"no matches in scope {args.scope!r} of {args.model}")
    else:
        rows = [
            (rank, f"{m.get('score', 0):.4f}", m.get("id"), m.get("media_ref"), m.get("metadata"))
            for rank, m in enumerate(matches, 1)
        ]
        print_table(["#", "score", "id", "media_ref", "metadata"], rows)
    return 0


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

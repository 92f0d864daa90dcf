"""How the CLI talks: rich tables for people, JSON lines for machines, a rich progress bar
on stderr when stderr is a terminal.

Everything printed goes through here, so one place decides: no rich markup is read from
data (file names with ``[brackets]`` print as they are), tables never wrap in a pipe,
error text is one line, and long vectors print compactly.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TextIO

import attrs
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.progress import Task as RichTask
from rich.table import Column, Table
from rich.text import Text

from ._common import one_line

__all__ = [
    "Progress",
    "compact",
    "console",
    "dump_json",
    "human_bytes",
    "jsonable",
    "one_line",
    "print_table",
]

VECTOR_SHOWN = 4  # numbers shown of a long list of numbers
# Table columns whose values are copied (IDs, refs, slugs): never broken or cut.
WHOLE = frozenset({"id", "slug", "media_ref", "model", "run_id"})
_MIN_FOLDED = 6  # the narrowest a folding column may get
_GAP = 3  # rich's padding between columns of a SIMPLE_HEAD table without edges


def console(stream: TextIO | None = None) -> Console:
    """A console that prints text as given (no markup, no highlighting); off a terminal it
    never wraps, so pipes and files get whole lines."""
    out = stream or sys.stdout
    plain = Console(file=out, markup=False, highlight=False, emoji=False)
    if plain.is_terminal:
        return plain
    return Console(file=out, markup=False, highlight=False, emoji=False, width=100_000)


def jsonable(value: Any) -> Any:
    """Plain JSON values from SDK objects: attrs classes, Decimal (as str), datetime, tuples."""
    if attrs.has(type(value)):
        return {f.name: jsonable(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, BaseException):
        return {"type": type(value).__name__, "message": one_line(value)}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def compact(value: Any) -> Any:
    """``jsonable(value)`` with every long list of numbers cut to a short string."""
    value = jsonable(value)
    if isinstance(value, dict):
        return {k: compact(v) for k, v in value.items()}
    if isinstance(value, list):
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        if numbers and len(value) > VECTOR_SHOWN:
            shown = ", ".join(f"{v:.4g}" for v in value[:VECTOR_SHOWN])
            return f"[{shown}, ... {len(value)} numbers]"
        return [compact(v) for v in value]
    return value


def json_text(value: Any) -> str:
    """Indented JSON in which every list of numbers (a vector) stays on one line: valid
    JSON a user can copy, yet a 256-number embedding is one line, not 256."""
    vectors: list[str] = []
    token = secrets.token_hex(8)  # no string of the data can be mistaken for a placeholder

    def mark(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: mark(v) for k, v in item.items()}
        if isinstance(item, list):
            if item and all(_is_number(v) for v in item):
                vectors.append(json.dumps(item, separators=(", ", ":")))
                return f"vector-{token}-{len(vectors) - 1}"
            return [mark(v) for v in item]
        return item

    text = json.dumps(mark(jsonable(value)), indent=2, ensure_ascii=False)
    for number, vector in enumerate(vectors):
        text = text.replace(f'"vector-{token}-{number}"', vector)
    return text


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def dump_json(value: Any, *, stream: TextIO | None = None, indent: int | None = 2) -> None:
    """One JSON document (``indent=None``: one line, for JSON-lines streams), flushed."""
    out = stream or sys.stdout
    out.write(json.dumps(jsonable(value), indent=indent, ensure_ascii=False) + "\n")
    out.flush()


def print_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], *, stream: TextIO | None = None
) -> None:
    """A borderless rich table: a bold header row, then one line per row.

    IDs, refs and slugs (the ``WHOLE`` columns) are never broken or cut, since a copied
    half-ID is wrong: the other columns fold to give them room, and when even that cannot
    fit the terminal, each row folds into ``header: value`` lines instead.
    """
    cells = [[_cell(v) for v in row] for row in rows]
    out = console(stream)
    whole = [i for i, header in enumerate(headers) if header in WHOLE]
    widths = {i: max([len(headers[i]), *(len(row[i]) for row in cells)]) for i in whole}
    folding = [
        min(_MIN_FOLDED, max([len(headers[i]), *(len(row[i]) for row in cells)]))
        for i in range(len(headers))
        if i not in widths
    ]
    needed = sum(widths.values()) + sum(folding) + _GAP * (len(headers) - 1)
    if needed > out.width:
        _print_records(out, headers, cells)
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for i, header in enumerate(headers):
        if i in widths:
            table.add_column(header, no_wrap=True, min_width=widths[i], overflow="ignore")
        else:
            table.add_column(header, overflow="fold", min_width=min(_MIN_FOLDED, len(header)))
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))
    with out.capture() as captured:
        out.print(table)
    lines = (line.rstrip() for line in captured.get().splitlines())  # no padding at the ends
    out.file.write("".join(line + "\n" for line in lines))
    out.file.flush()


def _print_records(out: Console, headers: Sequence[str], cells: list[list[str]]) -> None:
    """Rows too wide for the terminal: one ``header: value`` line per cell, a blank line
    between rows; other values fold to the terminal, IDs stay whole on their line."""
    name_width = max(len(header) for header in headers)
    room = max(out.width - name_width - 2, _MIN_FOLDED)
    indent = " " * (name_width + 2)

    def lines(header: str, cell: str) -> str:
        parts = [cell] if header in WHOLE else textwrap.wrap(cell, room) or [""]
        first, *rest = parts
        return f"{header:<{name_width}}  {first}\n" + "".join(f"{indent}{p}\n" for p in rest)

    blocks = ["".join(lines(h, c) for h, c in zip(headers, row, strict=True)) for row in cells]
    out.file.write("\n".join(blocks))
    out.file.flush()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, BaseException):
        return one_line(value)
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(compact(value), separators=(",", ":"), ensure_ascii=False)
    return str(value)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


class _BytesColumn(ProgressColumn):
    """Bytes sent so far and their rate (the bar itself counts files)."""

    def render(self, task: RichTask) -> Text:
        nbytes = task.fields.get("nbytes", 0)
        elapsed = task.elapsed or 0.0
        rate = human_bytes(nbytes / elapsed) + "/s" if elapsed > 0 else "-"
        return Text(f"{human_bytes(nbytes)} {rate}", style="progress.data.speed")


class _FailedColumn(ProgressColumn):
    def render(self, task: RichTask) -> Text:
        failed = task.fields.get("failed", 0)
        return Text(f"{failed} failed", style="red" if failed else "progress.remaining")


def _columns(width: int) -> list[ProgressColumn]:
    """As many columns as fit the terminal: a narrow one shortens the label and the bar
    and drops bytes, never the failure count (a silent failure is the worst news)."""
    narrow = width < 60
    label = TextColumn(
        "{task.description}", table_column=Column(no_wrap=True, max_width=10 if narrow else 20)
    )
    columns: list[ProgressColumn] = [
        label,
        BarColumn(bar_width=8 if narrow else None),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        _FailedColumn(),
    ]
    if width >= 72:
        columns.append(_BytesColumn())
    return columns


@attrs.define
class Progress:
    """Files done of a total, bytes, ETA and failures: a rich bar on stderr.

    Off (every call a no-op except ``note``) unless stderr is a terminal and ``enabled``;
    ``note`` prints a line above the bar, or plainly to stderr when the bar is off.
    """

    label: str
    total: int | None = None
    enabled: bool = True
    done: int = 0
    failed: int = 0
    nbytes: int = 0
    _console: Console = attrs.field(factory=lambda: console(sys.stderr))
    _bar: RichProgress | None = None
    _task: Any = None

    def __attrs_post_init__(self) -> None:
        if self.enabled and self._console.is_terminal:
            self._bar = RichProgress(
                *_columns(self._console.width),
                console=self._console,
                transient=False,
                refresh_per_second=8,
            )
            self._task = self._bar.add_task(self.label, total=self.total, nbytes=0, failed=0)
            self._bar.start()

    def advance(self, items: int = 0, *, nbytes: int = 0, failed: int = 0) -> None:
        self.done += items
        self.nbytes += nbytes
        self.failed += failed
        if self._bar is not None:
            self._bar.update(
                self._task, completed=self.done, nbytes=self.nbytes, failed=self.failed
            )

    def note(self, text: str) -> None:
        """A line of its own (e.g. a failure), above the bar; always one line."""
        self._console.print(Text(one_line(text)), soft_wrap=True)

    async def __aenter__(self) -> Progress:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """Closed however the work ends; erased when Ctrl-C (a cancellation) ended it."""
        self.close(erase=kind is not None and issubclass(kind, asyncio.CancelledError))

    def close(self, *, erase: bool = False) -> None:
        """Draw the final state and leave the bar on screen, or ``erase`` it (on Ctrl-C the
        terminal's ``^C`` echo has moved the cursor under rich's feet, and the summary that
        follows says the same); idempotent."""
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.live.transient = erase
            bar.stop()

"""How the CLI talks: aligned tables for people, JSON for machines, progress bars on a TTY.

The progress bar is a few lines of ``\\r`` redrawing (plus one ANSI erase-line code) rather
than a dependency: rich would add dozens of modules to every CLI start for one bar. It draws
only when its stream is a terminal, so pipes and CI logs stay clean.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TextIO

import attrs

__all__ = ["Progress", "dump_json", "human_bytes", "jsonable", "print_table"]


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
        return {"type": type(value).__name__, "message": str(value)}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def dump_json(value: Any, *, stream: TextIO | None = None, indent: int | None = 2) -> None:
    """One JSON document (``indent=None``: one line, for JSON-lines streams)."""
    out = stream or sys.stdout
    out.write(json.dumps(jsonable(value), indent=indent, ensure_ascii=False) + "\n")
    out.flush()


def print_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], *, stream: TextIO | None = None
) -> None:
    """Left-aligned columns, two spaces apart, with a header row."""
    cells = [[str(h) for h in headers], *([_cell(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    out = stream or sys.stdout
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(jsonable(value), separators=(",", ":"))
    return str(value)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


@attrs.define
class Progress:
    """A one-line progress bar: items, bytes, throughput, ETA and failures.

    Silent unless ``stream`` is a TTY (or ``enabled=True``); redraws at most 10 times a
    second, and always on ``close()``.
    """

    label: str
    total: int | None = None
    stream: TextIO = attrs.field(factory=lambda: sys.stderr)
    enabled: bool | None = None
    done: int = 0
    failed: int = 0
    nbytes: int = 0
    _started: float = attrs.field(factory=time.monotonic)
    _drawn: float = 0.0

    def __attrs_post_init__(self) -> None:
        if self.enabled is None:
            self.enabled = self.stream.isatty()

    def advance(self, items: int = 0, *, nbytes: int = 0, failed: int = 0) -> None:
        self.done += items
        self.nbytes += nbytes
        self.failed += failed
        now = time.monotonic()
        if self.enabled and now - self._drawn >= 0.1:
            self._drawn = now
            self._draw(now)

    def note(self, text: str) -> None:
        """A line of its own (e.g. a failure), printed above the bar."""
        if self.enabled:
            self.stream.write("\r\x1b[2K")
        self.stream.write(text + "\n")
        if self.enabled:
            self._draw(time.monotonic())
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()

    def line(self, now: float | None = None) -> str:
        """The bar's text (also handy for tests)."""
        elapsed = max((now or time.monotonic()) - self._started, 1e-6)
        parts = [self.label]
        if self.total:
            filled = int(24 * min(self.done / self.total, 1.0))
            parts.append(f"[{'#' * filled}{'.' * (24 - filled)}] {self.done}/{self.total}")
        else:
            parts.append(f"{self.done}")
        parts.append(f"{human_bytes(self.nbytes)} at {human_bytes(self.nbytes / elapsed)}/s")
        if self.total and self.done:
            left = (self.total - self.done) * elapsed / self.done
            parts.append(f"ETA {left:.0f}s")
        parts.append(f"{self.failed} failed")
        return "  ".join(parts)

    def _draw(self, now: float) -> None:
        self.stream.write("\r\x1b[2K" + self.line(now))
        self.stream.flush()

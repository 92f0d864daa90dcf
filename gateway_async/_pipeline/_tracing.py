"""How an ingest's items are traced (``trace=``): bounded traces for long-running ingests.

- ``"item"`` (the default): each item's upload and run form a trace of their own, rooted
  in a ``gateway.ingest.item`` span linked to the ``gateway.ingest`` span. A worker that
  runs for days makes many small traces, never one that grows without end.
- ``"batch"``: every ``BATCH`` items share one ``gateway.ingest.batch`` trace (linked to
  the ingest): fewer traces, still bounded.
- ``"ingest"``: everything under the ``gateway.ingest`` span (one trace; fine for a
  finite ingest of a few thousand items).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal, TypeAlias

import attrs

from .._errors import InvalidRequestError
from .._telemetry import Attributes, Telemetry

__all__ = ["BATCH", "TRACE_MODES", "TraceMode", "Traces", "check_trace"]

TraceMode: TypeAlias = Literal["item", "batch", "ingest"]
TRACE_MODES: tuple[str, ...] = ("item", "batch", "ingest")
BATCH = 100  # items per trace with trace="batch"


def check_trace(mode: object) -> None:
    if mode not in TRACE_MODES:
        raise InvalidRequestError(
            f"trace: expected one of {', '.join(map(repr, TRACE_MODES))}, got {mode!r:.40}",
            field="trace",
        )


@attrs.define
class _Open:
    span: Any
    items: int = 0  # begun and not yet ended
    seen: int = 0  # begun in all


@attrs.define
class Traces:
    """The open item or batch spans of one ingest; every method a no-op when not tracing."""

    observer: Telemetry | None
    mode: TraceMode
    described: Attributes
    _open: dict[int, _Open] = attrs.field(factory=dict)
    _begun: set[int] = attrs.field(factory=set)

    @property
    def on(self) -> bool:
        return self.mode != "ingest" and self.observer is not None and self.observer.tracing()

    def _key(self, index: int) -> int:
        return index if self.mode == "item" else index // BATCH

    @contextlib.contextmanager
    def inside(self, index: int) -> Iterator[None]:
        """Run a stage of item ``index`` with its item (or batch) span current."""
        if not self.on:
            yield
            return
        assert self.observer is not None
        key = self._key(index)
        entry = self._open.get(key)
        if entry is None:
            name = "gateway.ingest.item" if self.mode == "item" else "gateway.ingest.batch"
            where = {"gateway.ingest.index" if self.mode == "item" else "gateway.ingest.batch": key}
            span = self.observer.linked_root(name, {**self.described, **where})
            entry = self._open[key] = _Open(span)
        if index not in self._begun:
            self._begun.add(index)
            entry.items += 1
            entry.seen += 1
        token = self.observer.enter(entry.span)
        try:
            yield
        finally:
            self.observer.leave(token)

    def done(self, index: int) -> None:
        """Item ``index`` ended (handed out or dropped): end its span, or its batch's once
        the batch is full and all of it ended."""
        if index not in self._begun:
            return
        self._begun.discard(index)
        key = self._key(index)
        entry = self._open[key]
        entry.items -= 1
        if entry.items == 0 and (self.mode == "item" or entry.seen == BATCH):
            del self._open[key]
            self._end(entry)

    def close(self) -> None:
        """The ingest ended: end what is still open (a last, partial batch)."""
        for entry in self._open.values():
            self._end(entry)
        self._open.clear()
        self._begun.clear()

    def _end(self, entry: _Open) -> None:
        assert self.observer is not None  # only tracing opens entries
        self.observer.end(entry.span)

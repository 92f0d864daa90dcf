"""What the ingest pipeline hands to its caller: items, events, the summary, its one error."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any, Literal

import attrs

from .._errors import GatewayError
from ..models import MediaRef, Run

__all__ = [
    "BudgetExhaustedError",
    "EventKind",
    "IngestEvent",
    "IngestItem",
    "IngestSummary",
    "Tally",
]

_STOPPED = {
    "budget": "max_spend reached",
    "stopped": "stop() was called",
    "error": "an error every item would meet",
    "cancelled": "cancelled",
}
EventKind = Literal["read", "uploaded", "reused", "skipped", "succeeded", "failed"]


class BudgetExhaustedError(GatewayError):
    """An item that was not run because ``max_spend`` would have been exceeded."""


@attrs.frozen(kw_only=True)
class IngestItem:
    """One source's outcome. ``error`` is set when it failed before or instead of a run.

    ``index`` is the source's position in the input; ``skipped`` means the journal already
    had this source indexed (``run`` is then None). A run that executed but ended with
    ``status == "failed"`` is in ``run``, with ``error`` None.
    """

    index: int
    source: Any
    media_ref: MediaRef | None = None
    run: Run | None = None
    error: Exception | None = None
    skipped: bool = False

    @property
    def ok(self) -> bool:
        """Indexed now or before: no error, and the run (if any) succeeded."""
        return self.error is None and (
            self.skipped or (self.run is not None and self.run.succeeded)
        )


@attrs.frozen(kw_only=True)
class IngestEvent:
    """A progress signal for ``on_event``; ``nbytes`` is the size of an "uploaded" one."""

    kind: EventKind
    index: int
    source: Any
    nbytes: int = 0


@attrs.frozen(kw_only=True)
class IngestSummary:
    """Counts of an ingest so far (final once iteration ended).

    ``total`` sources were read; each ends as exactly one of ``skipped`` (journal had it),
    ``succeeded``, ``failed`` or ``not_run`` (``max_spend`` reached). ``uploaded`` and
    ``reused`` count how media was obtained; ``bytes`` were uploaded; ``credits`` is the
    sum of ``usage.credits`` of the runs this ingest's calls executed (a replay of an
    earlier call's run, e.g. another ingest's on the same journal, adds nothing);
    ``stopped`` says why the ingest ended early ("budget", "stopped", "error" or
    "cancelled"), None when it ran out of sources.
    """

    total: int
    uploaded: int
    reused: int
    skipped: int
    succeeded: int
    failed: int
    not_run: int
    bytes: int
    credits: Decimal
    duration: float
    stopped: str | None = None

    @property
    def finished(self) -> int:
        return self.skipped + self.succeeded + self.failed + self.not_run

    def __str__(self) -> str:
        """One line for people (``print(ingest.summary)``); ``repr`` keeps the fields."""
        counts = f"{self.succeeded} succeeded, {self.failed} failed, {self.skipped} skipped"
        if self.not_run:
            counts += f", {self.not_run} not run"
        why = _STOPPED.get(self.stopped or "", self.stopped)
        stopped = f"; ended early: {why}" if self.stopped else ""
        return (
            f"{counts} of {self.total} in {self.duration:.2f} s; {self.uploaded} uploaded "
            f"({self.bytes} bytes), {self.reused} reused; {self.credits} credits{stopped}"
        )


@attrs.define
class Tally:
    """The mutable counters behind ``IngestSummary`` (one loop, no locking)."""

    total: int = 0
    uploaded: int = 0
    reused: int = 0
    skipped: int = 0
    succeeded: int = 0
    failed: int = 0
    not_run: int = 0
    bytes: int = 0
    credits: Decimal = attrs.field(factory=Decimal)
    started: float = attrs.field(factory=time.monotonic)
    ended: float | None = None
    stopped: str | None = None

    def count(self, item: IngestItem) -> None:
        if item.run is not None and not item.run.replayed:  # a replay cost this ingest nothing
            self.credits += item.run.usage.credits
        if item.skipped:
            self.skipped += 1
        elif isinstance(item.error, BudgetExhaustedError):
            self.not_run += 1
        elif item.ok:
            self.succeeded += 1
        else:
            self.failed += 1

    def snapshot(self) -> IngestSummary:
        end = self.ended if self.ended is not None else time.monotonic()
        return IngestSummary(
            total=self.total,
            uploaded=self.uploaded,
            reused=self.reused,
            skipped=self.skipped,
            succeeded=self.succeeded,
            failed=self.failed,
            not_run=self.not_run,
            bytes=self.bytes,
            credits=self.credits,
            duration=end - self.started,
            stopped=self.stopped,
        )

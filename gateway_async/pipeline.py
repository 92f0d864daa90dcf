"""``gw.ingest``: upload many sources and index (or run) each one, resumably.

    async with Gateway() as gw:
        ingest = gw.ingest(paths, model="demo-image-embed", scope="photos", journal="j.db")
        async for item in ingest:
            if not item.ok:
                print(item.source, item.error or item.run)
        print(ingest.summary)

Sources may be any sync or async iterable (even unbounded) of paths, bytes, file objects or
``MediaRef``s. Each run starts as soon as its upload lands; memory stays bounded, and a slow
stage slows the reading of sources. See ``docs/pipeline.md`` for every option.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, Any, Unpack

from ._journal import Journal, JournalError, JournalLockedError, JournalMismatchError
from ._pipeline._control import AIMDLimiter, SpendBudget
from ._pipeline._engine import Ingest
from ._pipeline._settings import IngestOptions, settings_of
from ._pipeline._types import BudgetExhaustedError, IngestEvent, IngestItem, IngestSummary

if TYPE_CHECKING:
    from ._client import Gateway

__all__ = [
    "AIMDLimiter",
    "BudgetExhaustedError",
    "Ingest",
    "IngestEvent",
    "IngestItem",
    "IngestOptions",
    "IngestSummary",
    "Journal",
    "JournalError",
    "JournalLockedError",
    "JournalMismatchError",
    "SpendBudget",
    "ingest",
]


def ingest(
    gw: Gateway, sources: Iterable[Any] | AsyncIterable[Any], **options: Unpack[IngestOptions]
) -> Ingest:
    """Start describing an ingest; work begins when you iterate the returned ``Ingest``.

    Bad options raise ``InvalidRequestError`` here, at once; everything that needs the
    Gateway (the model, the wallet, the journal) happens on the first iteration.
    """
    return Ingest(gw, sources, settings_of(options))

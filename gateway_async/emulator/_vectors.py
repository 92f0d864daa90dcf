"""The vector store behind ``index`` and ``search``: items per (model, collection, scope).

Search is exact (a dot product against every item of the one namespace): the demo
datasets are small, and exact scores make tests precise. Search never crosses scopes.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from ._db import Db
from ._embed import cosine
from ._wire import check_value

DEFAULT_COLLECTION = "default"
Namespace = tuple[str, str, str]  # (model, collection, scope)


@dataclass
class Item:
    """One indexed vector with what a match returns."""

    id: str
    model: str
    collection: str
    scope: str
    vector: list[float]
    media_ref: str | None
    metadata: dict[str, Any]

    def match(self, score: float) -> dict[str, Any]:
        """The contract's match object."""
        return {
            "id": self.id,
            "score": round(score, 6),
            "media_ref": self.media_ref,
            "metadata": self.metadata,
        }


class VectorStore:
    """Items grouped by namespace, written through to the database."""

    def __init__(self, db: Db, sizes: Counter[tuple[str, str]]) -> None:
        self._db = db
        self._sizes = sizes
        self._items: defaultdict[Namespace, list[Item]] = defaultdict(list)
        for record in db.load("vectors").values():
            self._insert(Item(**record))

    def _insert(self, item: Item) -> None:
        self._items[(item.model, item.collection, item.scope)].append(item)
        self._sizes[(item.model, item.scope)] += 1

    def add(self, item: Item) -> None:
        """Index one item whose metadata can be sent back (ValueError otherwise): a value no
        search could encode would poison its whole scope."""
        check_value(item.metadata)
        self._db.put("vectors", item.id, dataclasses.asdict(item))
        self._insert(item)  # after the write: a failed write leaves no trace

    def search(self, namespace: Namespace, vector: list[float], top_k: int) -> list[dict[str, Any]]:
        """The ``top_k`` best matches in one namespace, best first (ties by id)."""
        scored = [(cosine(vector, item.vector), item) for item in self._items.get(namespace, [])]
        scored.sort(key=lambda pair: (-pair[0], pair[1].id))
        return [item.match(score) for score, item in scored[:top_k]]

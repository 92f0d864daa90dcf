"""The workspace's durable state: wallet, usage, uploads, media and idempotency records.

Everything lives in memory for fast reads and is written through to :class:`Db` as it
changes, so an emulator restarted on the same data directory picks up where it left off.
The emulator serves one workspace; every configured credential shares its wallet. A run
reserves its price while it executes (so concurrent runs cannot overdraw the wallet) and
is charged only in :meth:`State.settle`, in one transaction with its idempotency reply.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from ._db import Db

Clock = Callable[[], float]
_T = TypeVar("_T")


@dataclass
class Upload:
    """One media upload from ``init`` until ``complete``."""

    upload_id: str
    filename: str
    content_type: str
    size: int
    sha256: str | None
    expires_at: float
    put_sha256: str | None = None
    media_ref: str | None = None
    expired: bool = False  # answered 410 once: final


@dataclass
class Media:
    """A completed upload, addressed by its ``media_ref``."""

    media_ref: str
    filename: str
    content_type: str
    size: int
    sha256: str

    def public(self) -> dict[str, Any]:
        """The contract's ``complete`` response body."""
        return dataclasses.asdict(self)


@dataclass
class Usage:
    """One charged run."""

    run_id: str
    model: str
    credits: str
    at: float


@dataclass
class Replay:
    """The first successful response to an idempotent request."""

    body_hash: str
    status: int
    body: str
    created_at: float


def _restore(cls: type[_T], records: dict[str, dict[str, Any]]) -> dict[str, _T]:
    return {key: cls(**value) for key, value in records.items()}


class State:
    """Wallet, usage, uploads, media and replays, written through to the database."""

    def __init__(self, db: Db, clock: Clock, initial_balance: Decimal) -> None:
        self._db = db
        self._clock = clock
        meta = db.load("meta")
        if "wallet" not in meta:
            meta["wallet"] = {"balance": str(initial_balance), "updated_at": clock()}
            db.put("meta", "wallet", meta["wallet"])
        self.balance = Decimal(meta["wallet"]["balance"])
        self.updated_at: float = meta["wallet"]["updated_at"]
        self.uploads = _restore(Upload, db.load("uploads"))
        self.media = _restore(Media, db.load("media"))
        # Contract version 3: (sha256, size) -> the first completed media with those bytes.
        self.held: dict[tuple[str, int], Media] = {}
        for media in self.media.values():
            self._hold(media)
        self.usage = list(_restore(Usage, db.load("usage")).values())
        self.replays = _restore(Replay, db.load("idempotency"))
        self.reserved = Decimal(0)

    def set_balance(self, balance: Decimal) -> None:
        """Replace the wallet balance."""
        self.balance = balance
        self.updated_at = self._clock()
        self._db.put("meta", "wallet", {"balance": str(balance), "updated_at": self.updated_at})

    @property
    def available(self) -> Decimal:
        """The balance minus what runs under way have reserved."""
        return self.balance - self.reserved

    def reserve(self, price: Decimal) -> None:
        """Set ``price`` aside for a run under way (nothing is charged or stored yet)."""
        self.reserved += price

    def release(self, price: Decimal) -> None:
        """Give back a reservation whose run produced no answer."""
        self.reserved -= price

    def settle(
        self,
        usage: Usage | None,
        replay: tuple[str, Replay] | None,
        effect: Callable[[], None] | None = None,
    ) -> None:
        """Charge a run (turning its reservation into usage) together with the reply stored
        for its idempotency key and the run's own writes (``effect``, e.g. an indexed item),
        in one transaction: all of them are durable, or none is."""
        price = Decimal(0) if usage is None else Decimal(usage.credits)
        balance = self.balance - price
        try:
            with self._db.transaction():
                if usage is not None:
                    wallet = {"balance": str(balance), "updated_at": usage.at}
                    self._db.put("meta", "wallet", wallet)
                    self._db.put("usage", usage.run_id, dataclasses.asdict(usage))
                if replay is not None:
                    self._db.put("idempotency", replay[0], dataclasses.asdict(replay[1]))
                if effect is not None:
                    effect()
        finally:
            self.reserved -= price
        if usage is not None:
            self.balance, self.updated_at = balance, usage.at
            self.usage.append(usage)
        if replay is not None:
            self.replays[replay[0]] = replay[1]

    def save_upload(self, upload: Upload) -> None:
        """Store or update an upload."""
        self.uploads[upload.upload_id] = upload
        self._db.put("uploads", upload.upload_id, dataclasses.asdict(upload))

    def complete(
        self, upload: Upload, media: Media, effect: Callable[[], None] | None = None
    ) -> None:
        """Record ``upload`` as completed into ``media`` (and ``effect``'s writes) in one
        transaction: a process killed at any point leaves the upload pending or completed,
        never half of each. The in-memory records change only once the commit is done."""
        done = dataclasses.replace(upload, put_sha256=media.sha256, media_ref=media.media_ref)
        with self._db.transaction():
            self._db.put("media", media.media_ref, dataclasses.asdict(media))
            self._db.put("uploads", upload.upload_id, dataclasses.asdict(done))
            if effect is not None:
                effect()
        self.media[media.media_ref] = media
        upload.put_sha256, upload.media_ref = done.put_sha256, done.media_ref
        self._hold(media)

    def _hold(self, media: Media) -> None:
        if media.sha256:
            self.held.setdefault((media.sha256, media.size), media)

    def forget_replay(self, key: str) -> None:
        """Drop an expired idempotency record."""
        self.replays.pop(key, None)
        self._db.delete("idempotency", key)

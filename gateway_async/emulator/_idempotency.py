"""``Idempotency-Key`` for POSTs: replay the first successful response, 409 on a new body.

A record is keyed by (credential, method, path, key) and remembers the hash of the
canonical JSON body with the first 2xx response, for 24 hours. Error responses are not
remembered: a retry after a 4xx/5xx re-evaluates the request. A per-record lock makes
two concurrent identical requests execute once: the second waits, then replays.

Handlers return an :class:`Answer`: the response plus the run's charge, if any. The charge
and the stored reply are committed together (:meth:`State.settle`) only once the response
exists, so a request that fails on the way is neither charged nor remembered, and its
retry executes once and is charged once.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

from aiohttp import web

from ._errors import JSON_TYPE, ApiError
from ._locks import KeyedLocks
from ._state import Clock, Replay, State, Usage
from ._stats import EmulatorStats
from ._wire import canonical

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
RETENTION = 24 * 3600.0
KEY_PATTERN = "^[!-~]([ -~]{0,253}[!-~])?$"  # also in the OpenAPI document
_KEY = re.compile(KEY_PATTERN)


@dataclass(frozen=True)
class Answer:
    """A handler's complete response, the charge to settle with it (None: free) and the
    writes that must land with that charge."""

    response: web.Response
    charge: Usage | None = None
    effect: Callable[[], None] | None = None  # writes that land only with the charge


def check_key(key: str) -> None:
    """Refuse a key that is not 1..255 printable ASCII characters (422). HTTP trims a
    header's outer spaces, so the pattern asks for a visible first and last character."""
    if not _KEY.fullmatch(key):
        raise ApiError(
            422,
            f"the {HEADER} header must be 1 to 255 printable ASCII characters",
            field=HEADER,
        )


def body_hash(raw: bytes) -> str:
    """SHA-256 of the canonical JSON form of ``raw`` (of the bytes when not JSON)."""
    try:
        text = canonical(json.loads(raw)).encode()
    except ValueError:
        text = raw
    return hashlib.sha256(text).hexdigest()


class Idempotency:
    """Stored replays plus the locks that serialise requests sharing a key."""

    def __init__(self, state: State, stats: EmulatorStats, clock: Clock) -> None:
        self._state = state
        self._stats = stats
        self._clock = clock
        self._locks = KeyedLocks()

    async def handle(
        self,
        request: web.Request,
        credential: str,
        raw: bytes,
        handler: Callable[[], Awaitable[Answer]],
    ) -> web.Response:
        """Run ``handler`` once per key and body; replay its 2xx answer afterwards."""
        key = request.headers.get(HEADER)
        if key is None:
            return self._settle(await handler(), None, None)
        check_key(key)
        parts = canonical([credential, request.method, request.path, key])
        record_key = hashlib.sha256(parts.encode()).hexdigest()
        digest = body_hash(raw)
        async with self._locks.hold(record_key):
            replay = self._lookup(record_key)
            if replay is not None:
                return self._replay(replay, digest)
            return self._settle(await handler(), key, (record_key, digest))

    def _settle(
        self, answer: Answer, key: str | None, record: tuple[str, str] | None
    ) -> web.Response:
        """Commit the answer's charge and its replay record in one step, then count it."""
        response, charge = answer.response, answer.charge
        replay = None
        body = response.body
        if record is not None and 200 <= response.status < 300 and isinstance(body, bytes):
            stored = Replay(record[1], response.status, body.decode(), self._clock())
            replay = (record[0], stored)
        self._state.settle(charge, replay, answer.effect)
        if charge is not None:
            self._stats.executions += 1
            self._stats.charges += 1
            self._stats.charged_total += Decimal(charge.credits)
            if key is not None:
                self._stats.executions_by_idempotency_key[key] += 1
        return response

    def _lookup(self, record_key: str) -> Replay | None:
        replay = self._state.replays.get(record_key)
        if replay is not None and replay.created_at + RETENTION < self._clock():
            self._state.forget_replay(record_key)
            return None
        return replay

    def _replay(self, replay: Replay, digest: str) -> web.Response:
        if replay.body_hash != digest:
            raise ApiError(
                409,
                f"this {HEADER} was already used with a different request body; "
                "use a new key for a new request",
                field=HEADER,
            )
        self._stats.replays += 1
        return web.Response(
            text=replay.body,
            status=replay.status,
            content_type=JSON_TYPE,
            charset="utf-8",
            headers={REPLAYED: "true"},
        )

"""A stateful, concurrent conformance soak of multipart ``complete`` (contract version 2
"Details"): per trial, one upload and a burst of concurrent completes, each with a correct
body or a seeded mutation of it (another ETag or sha256, a part missing, duplicated, out of
order or never stored, a wrong whole-object sha256), some with an ``Idempotency-Key``. Every
correct complete must answer 200 with one ``media_ref``; every mutation must be refused (409
or 422) without changing anything, before and after completion; the object is byte-exact and
the parts are gone. ``make soak`` adds SIGKILL trials (see ``tests/multipart``).

``GATEWAY_SOAK_N`` sets the size: N // 250 trials (2 in ``make test``, 80 in ``make soak``)
and N // 5000 kill trials (at least 1).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from gateway_async.emulator import Emulator
from tests.emulator.conftest import Api, session
from tests.multipart.conftest import PART, THRESHOLD
from tests.multipart.test_complete_transaction import (
    COMPLETE,
    held_files,
    ready,
)
from tests.multipart.test_complete_transaction import (
    test_a_kill_mid_complete_leaves_it_completed_or_completable as kill_trial,
)

pytestmark = pytest.mark.soak
__all__ = ["session"]  # the emulator tests' raw client session fixture

N = int(os.environ.get("GATEWAY_SOAK_N", "500"))
TRIALS, BURST, KILLS = max(2, N // 250), 12, max(1, N // 5000)
Parts = list[dict[str, Any]]
MUTATIONS: dict[str, Callable[[Parts], Parts]] = {
    "etag": lambda p: [{**p[0], "etag": '"0"'}, *p[1:]],
    "part-sha256": lambda p: [*p[:-1], {**p[-1], "sha256": "0" * 64}],
    "missing": lambda p: p[:-1],
    "duplicate": lambda p: [p[0], *p],
    "out-of-order": lambda p: [p[1], p[0], *p[2:]],
    "not-stored": lambda p: [*p, {**p[-1], "part_number": len(p) + 1}],
    "empty": lambda p: [],
}


async def test_concurrent_completes_with_hostile_bodies(session: aiohttp.ClientSession) -> None:
    rng = random.Random(20261206)
    options: dict[str, Any] = {"multipart_threshold": THRESHOLD, "multipart_part_size": PART}
    async with Emulator(**options) as emu:
        api = Api(session, emu)
        for trial in range(TRIALS):
            data = rng.randbytes(PART + rng.randrange(1, PART))
            upload_id, parts = await ready(api, data)
            bodies: list[tuple[str, dict[str, Any], dict[str, str]]] = []
            for n in range(BURST):
                kind = rng.choice(["ok", "ok", "whole-sha256", *MUTATIONS])
                body: dict[str, Any] = {"upload_id": upload_id, "parts": parts}
                if kind == "whole-sha256":
                    body["sha256"] = "f" * 64
                elif kind != "ok":
                    body["parts"] = MUTATIONS[kind](parts)
                key = {"Idempotency-Key": f"t{trial}-{n}"} if rng.random() < 0.3 else {}
                bodies.append((kind, body, key))
            bodies.append(("ok", {"upload_id": upload_id, "parts": parts}, {}))
            replies = await asyncio.gather(
                *(api.post(COMPLETE, b, headers=h) for _, b, h in bodies)
            )
            refs = set()
            for (kind, _, _), reply in zip(bodies, replies, strict=True):
                if kind == "ok":
                    assert reply.status == 200, reply.text
                    refs.add(reply.body["media_ref"])
                else:
                    assert reply.status in (409, 422), (kind, reply.text)
            assert len(refs) == 1
            assert emu.media_path(refs.pop()).read_bytes() == data
            assert held_files(emu, upload_id) == []
        assert list((emu.core.media_root / "tmp").iterdir()) == []
        assert len(emu.core.completing) == 0


@pytest.mark.parametrize("trial", range(KILLS))
async def test_kills_mid_complete(
    tmp_path_factory: pytest.TempPathFactory, session: aiohttp.ClientSession, trial: int
) -> None:
    point = ("media-write", "parts-dropped")[trial % 2]
    await kill_trial(tmp_path_factory.mktemp(f"kill{trial}"), session, point)

"""Contract version 3, "content already held": an ``init`` with the sha256 and size of bytes
the workspace already completed answers ``200`` with the finished upload, and nothing more
is sent; anything else answers as in versions 1 and 2."""

from __future__ import annotations

import hashlib
from pathlib import Path

import aiohttp

from gateway_async.emulator import Emulator

from .conftest import Api

INIT = "/api/media/upload/init"
DATA = b"held bytes " * 100
DIGEST = hashlib.sha256(DATA).hexdigest()


def init_body(data: bytes = DATA, **extra: object) -> dict[str, object]:
    return {"filename": "b.png", "content_type": "image/png", "size": len(data), **extra}


async def test_init_for_held_content_answers_200_with_the_finished_upload(
    api: Api, emu: Emulator
) -> None:
    media_ref = await api.upload(DATA)
    puts, initiated = emu.stats.puts, emu.stats.uploads_initiated
    reply = await api.post(INIT, init_body(sha256=DIGEST.upper()))
    assert reply.status == 200, reply.text
    assert reply.body == {
        "media_ref": media_ref,
        "size": len(DATA),
        "content_type": "image/png",  # this init's, not the first upload's
        "sha256": DIGEST,
        "filename": "b.png",
        "deduplicated": True,
    }
    assert (emu.stats.puts, emu.stats.uploads_initiated) == (puts, initiated)
    assert emu.stats.uploads_deduplicated == 1


async def test_init_answers_as_before_for_anything_not_held(api: Api, emu: Emulator) -> None:
    """No sha256, another size, or bytes only initiated (never completed): a 201 ticket."""
    pending = await api.post(INIT, init_body(sha256=DIGEST))
    assert pending.status == 201
    assert "upload_url" in pending.body
    await api.upload(DATA)
    for body in (init_body(), init_body(DATA + b"!", sha256=DIGEST)):
        reply = await api.post(INIT, body)
        assert reply.status == 201, body
    assert emu.stats.uploads_deduplicated == 0


async def test_a_replay_returns_the_first_answer_even_once_the_content_is_held(
    api: Api, emu: Emulator
) -> None:
    """Under one Idempotency-Key the first 201 stays the answer (the client must then find
    the upload completed), and a first 200 stays a 200."""
    key = {"Idempotency-Key": "held-1"}
    first = await api.post(INIT, init_body(sha256=DIGEST), headers=key)
    assert first.status == 201
    await api.upload(DATA)
    again = await api.post(INIT, init_body(sha256=DIGEST), headers=key)
    assert (again.status, again.body) == (201, first.body)
    assert again.headers["Idempotent-Replayed"] == "true"
    other = {"Idempotency-Key": "held-2"}
    held = await api.post(INIT, init_body(sha256=DIGEST), headers=other)
    replayed = await api.post(INIT, init_body(sha256=DIGEST), headers=other)
    assert (held.status, replayed.status, replayed.body) == (200, 200, held.body)


async def test_held_content_survives_a_restart(tmp_path: Path) -> None:
    async with Emulator(data_dir=tmp_path) as first, aiohttp.ClientSession() as session:
        media_ref = await Api(session, first).upload(DATA)
    async with Emulator(data_dir=tmp_path) as second, aiohttp.ClientSession() as session:
        reply = await Api(session, second).post(INIT, init_body(sha256=DIGEST))
    assert (reply.status, reply.body["media_ref"]) == (200, media_ref)

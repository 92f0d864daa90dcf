"""``complete`` of a multipart upload is one transaction (contract version 2 "Details"):
concurrent completes give one ``media_ref``, a ``409`` changes nothing, a kill leaves the
upload completed or completable, every complete is checked against the held parts before
and after completion, the part list must be held, once each and ascending, and ``410`` is
final. Each test here failed on the emulator before this was so (issue 22, defects 1-5)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway_async.emulator import Emulator
from tests.emulator.conftest import Api, FakeClock

from .conftest import PART, THRESHOLD
from .test_emulator_wire import COMPLETE, init, put_all

DATA = os.urandom(2 * PART + 7)  # three parts, the last of 7 bytes
SHA = hashlib.sha256(DATA).hexdigest()
PARTS_URL = "/api/media/upload/parts"


async def ready(api: Api, data: bytes = DATA) -> tuple[str, list[dict[str, Any]]]:
    """An upload with every part stored: its id and the correct ``parts`` list."""
    ticket = await init(api, len(data))
    return ticket["upload_id"], await put_all(api, ticket, data)


def held_files(emu: Emulator, upload_id: str) -> list[str]:
    return sorted(p.name for p in (emu.core.multipart.root / upload_id).glob("*"))


async def test_concurrent_completes_give_one_media_ref(api: Api, emu: Emulator) -> None:
    """Defect 1: 20 completes at once all answer 200 with one ref; one object is stored."""
    upload_id, parts = await ready(api)
    body = {"upload_id": upload_id, "parts": parts}
    replies = await asyncio.gather(*(api.post(COMPLETE, body) for _ in range(20)))
    assert [r.status for r in replies] == [200] * 20, [r.text for r in replies if r.status != 200]
    assert len({r.body["media_ref"] for r in replies}) == 1
    assert emu.media_path(replies[0].body["media_ref"]).read_bytes() == DATA
    assert len(list((emu.core.media_root / "objects").iterdir())) == 1
    assert emu.stats.uploads_completed == 1
    assert len(emu.core.completing) == 0  # no lock left behind


async def test_concurrent_completes_with_a_data_dir(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Defect 1 with ``--data-dir``: the refs agree after a restart too."""
    options: dict[str, Any] = {"multipart_threshold": THRESHOLD, "multipart_part_size": PART}
    async with Emulator(data_dir=tmp_path, **options) as emu:
        api = Api(session, emu)
        upload_id, parts = await ready(api)
        body = {"upload_id": upload_id, "parts": parts}
        replies = await asyncio.gather(*(api.post(COMPLETE, body) for _ in range(8)))
        assert {r.status for r in replies} == {200}
        refs = {r.body["media_ref"] for r in replies}
    assert len(refs) == 1
    async with Emulator(data_dir=tmp_path, **options) as again:
        reply = await Api(session, again).post(COMPLETE, body)
        assert (reply.status, reply.body["media_ref"]) == (200, refs.pop())
        assert again.media_path(reply.body["media_ref"]).read_bytes() == DATA


async def test_a_409_changes_nothing(api: Api, emu: Emulator) -> None:
    """Defect 2: a wrong whole-object sha256 is 409, the parts stay held and listed, and a
    correct complete then succeeds."""
    upload_id, parts = await ready(api)
    wrong = await api.post(COMPLETE, {"upload_id": upload_id, "parts": parts, "sha256": "0" * 64})
    assert (wrong.status, wrong.body["error"]["details"]) == (409, {"field": "sha256"})
    listing = await api.get(f"/api/media/upload/{upload_id}")
    assert (listing.body["status"], len(listing.body["parts"])) == ("pending", 3)
    assert held_files(emu, upload_id) == ["1", "2", "3"]
    assert list((emu.core.media_root / "objects").iterdir()) == []
    assert list((emu.core.media_root / "tmp").iterdir()) == []
    right = await api.post(COMPLETE, {"upload_id": upload_id, "parts": parts, "sha256": SHA})
    assert right.status == 200, right.text
    assert emu.media_path(right.body["media_ref"]).read_bytes() == DATA
    assert held_files(emu, upload_id) == []  # removed once the object is durable


async def test_a_409_for_the_init_sha256_changes_nothing(api: Api, emu: Emulator) -> None:
    """Defect 2, the sha256 given at init: the same promise."""
    body = {"filename": "big.bin", "content_type": "video/mp4", "size": len(DATA)}
    ticket = (await api.post("/api/media/upload/init", {**body, "sha256": "1" * 64})).body
    parts = await put_all(api, ticket, DATA)
    for _ in range(2):  # the second 409 too: nothing was consumed by the first
        reply = await api.post(COMPLETE, {"upload_id": ticket["upload_id"], "parts": parts})
        assert reply.status == 409, reply.text
    assert held_files(emu, ticket["upload_id"]) == ["1", "2", "3"]


SECOND_COMPLETES = [
    pytest.param(lambda p: [p[0], p[1], {**p[2], "sha256": "0" * 64}], 409, id="part-sha256"),
    pytest.param(lambda p: [p[0], p[1], {**p[2], "etag": '"0"'}], 409, id="etag"),
    pytest.param(lambda p: [{**p[0], "part_number": "1"}, p[1], p[2]], 422, id="number-str"),
    pytest.param(lambda p: [{**p[0], "etag": 5}, p[1], p[2]], 422, id="etag-int"),
    pytest.param(lambda p: [], 422, id="empty"),
    pytest.param(lambda p: p[:2], 409, id="a-part-missing"),
    pytest.param(lambda p: [p[1], p[0], p[2]], 409, id="out-of-order"),
]


@pytest.mark.parametrize(("mutate", "status"), SECOND_COMPLETES)
async def test_a_second_complete_is_validated(api: Api, mutate: Any, status: int) -> None:
    """Defect 4: after completion, a body that does not match the held parts is refused;
    the same body again (and without optional checksums) gets the same ref."""
    upload_id, parts = await ready(api)
    first = await api.post(COMPLETE, {"upload_id": upload_id, "parts": parts})
    assert first.status == 200
    reply = await api.post(COMPLETE, {"upload_id": upload_id, "parts": mutate(parts)})
    assert reply.status == status, reply.text
    assert reply.body["error"]["details"] == {"field": "parts"}
    for body in (parts, [{k: v for k, v in p.items() if k != "sha256"} for p in parts]):
        again = await api.post(COMPLETE, {"upload_id": upload_id, "parts": body})
        assert again.body["media_ref"] == first.body["media_ref"]


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda p: [*p, {**p[2], "part_number": 4}], id="part-4-of-3"),
        pytest.param(lambda p: [*p, {**p[2], "part_number": 10001}], id="part-10001"),
        pytest.param(lambda p: [p[0], p[0], p[1], p[2]], id="duplicate"),
        pytest.param(lambda p: [p[0], p[2], p[1]], id="out-of-order"),
    ],
)
async def test_parts_not_held_duplicated_or_out_of_order(
    api: Api, emu: Emulator, mutate: Any
) -> None:
    """Defect 5: 409 invalid_part, and nothing completes."""
    upload_id, parts = await ready(api)
    reply = await api.post(COMPLETE, {"upload_id": upload_id, "parts": mutate(parts)})
    assert (reply.status, reply.body["error"]["code"]) == (409, "invalid_part"), reply.text
    assert emu.core.state.uploads[upload_id].media_ref is None
    assert held_files(emu, upload_id) == ["1", "2", "3"]


async def test_410_is_final(api: Api, clock: FakeClock) -> None:
    """Also seen: once complete answered 410, refreshing part URLs cannot revive it."""
    upload_id, parts = await ready(api)
    clock.advance(901)
    assert (await api.post(COMPLETE, {"upload_id": upload_id, "parts": parts})).status == 410
    refresh = await api.post(PARTS_URL, {"upload_id": upload_id, "part_numbers": [1]})
    assert (refresh.status, refresh.body["error"]["code"]) == (410, "upload_expired")
    again = await api.post(COMPLETE, {"upload_id": upload_id, "parts": parts})
    assert again.status == 410


async def test_a_part_put_after_completion_is_no_such_upload(api: Api, emu: Emulator) -> None:
    """A late part PUT cannot change a completed upload or its listing."""
    ticket = await init(api, len(DATA))
    parts = await put_all(api, ticket, DATA)
    done = await api.post(COMPLETE, {"upload_id": ticket["upload_id"], "parts": parts})
    from .conftest import put_part

    late = await put_part(api.session, ticket, 1, DATA[:PART])
    assert late.status == 404
    listing = await api.get(f"/api/media/upload/{ticket['upload_id']}")
    assert [p["etag"] for p in listing.body["parts"]] == [p["etag"] for p in parts]
    assert emu.media_path(done.body["media_ref"]).read_bytes() == DATA


# -- defect 3: SIGKILL during complete (--data-dir) ---------------------------------------------


class Remote:
    """Just enough of an Emulator for :class:`Api`: the child's base URL."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url


@pytest.mark.parametrize("point", ["media-write", "parts-dropped"])
async def test_a_kill_mid_complete_leaves_it_completed_or_completable(
    tmp_path: Path, session: aiohttp.ClientSession, point: str
) -> None:
    """Defect 3: the emulator is SIGKILLed inside complete; restarted on its data dir, the
    upload is completed (byte-exact) or still completable (every listed part held)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.multipart._kill_child",
        str(tmp_path),
        point,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        base_url, _ = (await asyncio.wait_for(child.stdout.readline(), 60)).decode().split()
        api = Api(session, Remote(base_url))  # type: ignore[arg-type]
        upload_id, parts = await ready(api)
        with pytest.raises(aiohttp.ClientError):
            await api.post(COMPLETE, {"upload_id": upload_id, "parts": parts})
        assert await asyncio.wait_for(child.wait(), 60) == -9
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    options: dict[str, Any] = {"multipart_threshold": THRESHOLD, "multipart_part_size": PART}
    async with Emulator(data_dir=tmp_path, **options) as emu:
        api = Api(session, emu)
        listing = await api.get(f"/api/media/upload/{upload_id}")
        if listing.body["status"] == "pending":
            assert held_files(emu, upload_id) == ["1", "2", "3"]
        assert len(listing.body["parts"]) == 3
        reply = await api.post(COMPLETE, {"upload_id": upload_id, "parts": parts})
        assert reply.status == 200, reply.text
        assert emu.media_path(reply.body["media_ref"]).read_bytes() == DATA
        assert held_files(emu, upload_id) == []
        assert list((emu.core.media_root / "tmp").iterdir()) == []
        assert [p.name for p in (emu.core.media_root / "objects").iterdir()] == [
            reply.body["media_ref"]
        ]

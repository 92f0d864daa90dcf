"""Media uploads: init validation, the storage PUT's refusals (signature, expiry,
chunked, sizes, credentials, Content-Type), complete's checks, and byte-exact storage."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from gateway_async.emulator import Emulator

from .conftest import Api, FakeClock

DATA = os.urandom(700_000)  # several storage chunks
COMPLETE = "/api/media/upload/complete"
INIT = "/api/media/upload/init"


async def complete(api: Api, upload_id: str, **extra: Any) -> Any:
    return await api.post(COMPLETE, {"upload_id": upload_id, **extra})


async def test_round_trip_is_byte_exact(api: Api, emu: Emulator) -> None:
    ticket = await api.init(DATA, "application/pdf")
    assert ticket["method"] == "PUT"
    assert ticket["headers"] == {"Content-Type": "application/pdf"}
    assert ticket["expires_at"] == "2026-11-18T11:21:40Z"
    url = URL(ticket["upload_url"])
    assert url.origin() != URL(emu.base_url).origin()
    assert str(url.origin()) == emu.storage_url
    put = await api.put(ticket, DATA)
    assert put.status == 200
    assert put.headers["ETag"].startswith('"')
    done = await complete(api, ticket["upload_id"], sha256=hashlib.sha256(DATA).hexdigest())
    assert done.status == 200
    assert done.body == {
        "media_ref": done.body["media_ref"],
        "size": len(DATA),
        "content_type": "application/pdf",
        "sha256": hashlib.sha256(DATA).hexdigest(),
        "filename": "f.bin",
    }
    assert done.body["media_ref"].startswith("mref_")
    assert emu.media_path(done.body["media_ref"]).read_bytes() == DATA
    assert (emu.stats.puts, emu.stats.uploads_completed, emu.stats.credential_leaks) == (1, 1, 0)


async def test_empty_file(api: Api) -> None:
    media_ref = await api.upload(b"")
    assert media_ref.startswith("mref_")


async def test_each_upload_gets_its_own_ref(api: Api) -> None:
    assert await api.upload(b"same") != await api.upload(b"same")


@pytest.mark.parametrize(
    ("patch", "field", "status"),
    [
        ({"filename": None}, "filename", 422),
        ({"filename": ""}, "filename", 422),
        ({"filename": "dir/a.png"}, "filename", 422),
        ({"filename": "dir\\a.png"}, "filename", 422),
        ({"filename": "a\x00.png"}, "filename", 422),
        ({"content_type": None}, "content_type", 422),
        ({"content_type": "png"}, "content_type", 422),
        ({"size": None}, "size", 422),
        ({"size": -1}, "size", 422),
        ({"size": "3"}, "size", 422),
        ({"size": True}, "size", 422),
        ({"size": 5 * 1024**3 + 1}, "size", 413),
        ({"sha256": "abc"}, "sha256", 422),
        ({"checksum": "abc"}, "checksum", 422),
    ],
)
async def test_init_validation(api: Api, patch: dict[str, Any], field: str, status: int) -> None:
    body = {"filename": "a.png", "content_type": "image/png", "size": 3, **patch}
    reply = await api.post(INIT, {k: v for k, v in body.items() if v is not None})
    assert reply.status == status
    assert reply.body["error"]["details"] == {"field": field}
    assert reply.body["error"]["code"] == (
        "payload_too_large" if status == 413 else "validation_error"
    )


def tamper(url: str, old: str, new: str) -> URL:
    assert old in url
    return URL(url.replace(old, new, 1), encoded=True)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("X-Emu-Signature=", "X-Emu-Signature=0"),
        ("X-Emu-Expires=1", "X-Emu-Expires=2"),
        ("%2F", "/"),
        ("/storage/upl_", "/storage/upl_0"),
    ],
    ids=["signature", "expiry", "decoded slash", "upload id"],
)
async def test_tampered_url_is_403(api: Api, old: str, new: str) -> None:
    ticket = await api.init(b"abc")
    url = tamper(ticket["upload_url"], old, new)
    async with api.session.put(url, data=b"abc", headers=ticket["headers"]) as response:
        assert response.status == 403
        assert "<Code>SignatureDoesNotMatch</Code>" in await response.text()


async def test_expired_url_is_403_and_complete_is_410(api: Api, clock: FakeClock) -> None:
    ticket = await api.init(b"abc")
    clock.advance(901)
    put = await api.put(ticket, b"abc")
    assert put.status == 403
    late = await complete(api, ticket["upload_id"])
    assert (late.status, late.body["error"]["code"]) == (410, "upload_expired")


async def test_chunked_body_is_411(api: Api) -> None:
    ticket = await api.init(b"abc")

    async def chunks() -> AsyncIterator[bytes]:
        yield b"abc"

    url = URL(ticket["upload_url"], encoded=True)
    async with api.session.put(url, data=chunks(), headers=ticket["headers"]) as response:
        assert response.status == 411
        assert "MissingContentLength" in await response.text()


async def raw_put(url: str, headers: str, body: bytes) -> bytes:
    target = URL(url, encoded=True)
    reader, writer = await asyncio.open_connection(target.host, target.port)
    request = f"PUT {target.raw_path_qs} HTTP/1.1\r\nHost: {target.host}\r\n{headers}\r\n"
    writer.write(request.encode() + body)
    await writer.drain()
    if body and b"Content-Length: 1000" in request.encode():
        writer.close()  # hang up mid-body
        await writer.wait_closed()
        return b""
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


async def test_missing_content_length_is_411(api: Api) -> None:
    ticket = await api.init(b"abc")
    headers = "Content-Type: application/octet-stream\r\nConnection: close\r\n"
    answer = await raw_put(ticket["upload_url"], headers, b"")
    assert answer.startswith(b"HTTP/1.1 411")


@pytest.mark.parametrize(("body", "status"), [(b"ab", 400), (b"abcd", 400)])
async def test_wrong_length_is_refused(api: Api, body: bytes, status: int) -> None:
    ticket = await api.init(b"abc")
    assert (await api.put(ticket, body)).status == status
    early = await complete(api, ticket["upload_id"])
    assert (early.status, early.body["error"]["code"]) == (409, "conflict")


async def test_body_above_the_limit_is_413(session: aiohttp.ClientSession) -> None:
    async with Emulator(max_upload_size=100) as emu:
        api = Api(session, emu)
        too_big = await api.post(INIT, {"filename": "a", "content_type": "a/b", "size": 101})
        assert too_big.status == 413
        ticket = await api.init(b"x" * 100)
        assert (await api.put(ticket, b"x" * 150)).status == 413


async def test_hang_up_mid_body_stores_nothing(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with Emulator(data_dir=tmp_path) as emu:
        api = Api(session, emu)
        ticket = await api.init(b"x" * 1000)
        headers = "Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n"
        await raw_put(ticket["upload_url"], headers, b"x" * 100)
        upload_id = ticket["upload_id"]
    assert not (tmp_path / "media" / "uploads" / upload_id).exists()
    assert list((tmp_path / "media" / "tmp").iterdir()) == []


@pytest.mark.parametrize("header", ["X-API-Key", "Authorization"])
async def test_credentials_at_storage_are_refused_and_counted(
    api: Api, emu: Emulator, header: str
) -> None:
    ticket = await api.init(b"abc")
    assert (await api.put(ticket, b"abc", **{header: "secret"})).status == 400
    assert emu.stats.credential_leaks == 1


async def test_wrong_content_type_is_403(api: Api) -> None:
    ticket = await api.init(b"abc", "image/png")
    assert (await api.put(ticket, b"abc", **{"Content-Type": "image/jpeg"})).status == 403


async def test_last_complete_put_counts(api: Api, emu: Emulator) -> None:
    ticket = await api.init(b"abc")
    await api.put(ticket, b"abc")
    await api.put(ticket, b"xyz")
    done = await complete(api, ticket["upload_id"])
    assert emu.media_path(done.body["media_ref"]).read_bytes() == b"xyz"


async def test_complete_checks(api: Api) -> None:
    missing = await complete(api, "upl_nope")
    assert (missing.status, missing.body["error"]["details"]) == (404, {"field": "upload_id"})
    ticket = await api.init(b"abc")
    early = await complete(api, ticket["upload_id"])
    assert early.status == 409
    await api.put(ticket, b"abc")
    wrong = await complete(api, ticket["upload_id"], sha256="0" * 64)
    assert (wrong.status, wrong.body["error"]["details"]) == (409, {"field": "sha256"})
    first = await complete(api, ticket["upload_id"])
    again = await complete(api, ticket["upload_id"], sha256=hashlib.sha256(b"abc").hexdigest())
    assert first.status == again.status == 200
    assert again.body == first.body
    different = await complete(api, ticket["upload_id"], sha256="0" * 64)
    assert different.status == 409
    await api.put(ticket, b"xyz")
    assert (await complete(api, ticket["upload_id"])).status == 409


async def test_sha256_from_init_is_checked(api: Api) -> None:
    body = {"filename": "a", "content_type": "a/b", "size": 3, "sha256": "F" * 64}
    ticket = (await api.post(INIT, body)).body
    await api.put(ticket, b"abc")
    reply = await complete(api, ticket["upload_id"])
    assert (reply.status, reply.body["error"]["details"]) == (409, {"field": "sha256"})


async def test_completed_twice_after_expiry_returns_the_same_ref(
    api: Api, clock: FakeClock
) -> None:
    ticket = await api.init(b"abc")
    await api.put(ticket, b"abc")
    first = await complete(api, ticket["upload_id"])
    clock.advance(3600)
    assert (await complete(api, ticket["upload_id"])).body == first.body


async def test_media_ref_of_an_upload_id_is_refused_in_runs(api: Api) -> None:
    ticket = await api.init(b"abc")
    reply = await api.run(model="demo-image-embed", input={"image": ticket["upload_id"]})
    assert (reply.status, reply.body["error"]["details"]) == (422, {"field": "input.image"})
    assert "complete" in reply.body["error"]["message"]

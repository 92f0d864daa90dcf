"""The emulator's version-2 wire contract, driven with raw HTTP: init's parts, part PUT
refusals, listing, URL refresh, complete's checks and byte-exact assembly."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway_async.emulator import Emulator
from gateway_async.emulator._faults import Faults, FaultSpec
from gateway_async.emulator.cli import build_parser
from tests.emulator.conftest import Api, FakeClock

from .conftest import PART, THRESHOLD, put_part

DATA = os.urandom(2 * PART + 1)  # three parts, the last of one byte
INIT = "/api/media/upload/init"
COMPLETE = "/api/media/upload/complete"


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + PART] for i in range(0, len(data), PART)]


async def init(api: Api, size: int) -> Any:
    body = {"filename": "big.bin", "content_type": "video/mp4", "size": size}
    reply = await api.post(INIT, body)
    assert reply.status == 201, reply.text
    return reply.body


async def put_all(api: Api, ticket: Any, data: bytes) -> list[dict[str, Any]]:
    listed = []
    for number, chunk in enumerate(chunks(data), start=1):
        response = await put_part(api.session, ticket, number, chunk)
        assert response.status == 200
        listed.append(
            {
                "part_number": number,
                "etag": response.headers["ETag"],
                "sha256": hashlib.sha256(chunk).hexdigest(),
            }
        )
    return listed


async def test_init_answers_parts_strictly_above_the_threshold(api: Api) -> None:
    at = await init(api, THRESHOLD)
    assert "upload_url" in at
    assert "parts" not in at
    above = await init(api, THRESHOLD + 1)
    assert "upload_url" not in above
    assert above["part_size"] == PART
    assert [p["part_number"] for p in above["parts"]] == [1, 2]
    assert above["headers"] == {"Content-Type": "video/mp4"}
    assert above["method"] == "PUT"


async def test_parts_assemble_byte_exact(api: Api, emu: Emulator) -> None:
    ticket = await init(api, len(DATA))
    listed = await put_all(api, ticket, DATA)
    reply = await api.post(COMPLETE, {"upload_id": ticket["upload_id"], "parts": listed})
    assert reply.status == 200, reply.text
    assert reply.body["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert reply.body["size"] == len(DATA)
    assert emu.media_path(reply.body["media_ref"]).read_bytes() == DATA
    assert not (emu.core.multipart.root / ticket["upload_id"]).exists()  # parts dropped
    again = await api.post(COMPLETE, {"upload_id": ticket["upload_id"], "parts": listed})
    assert again.body["media_ref"] == reply.body["media_ref"]
    status = await api.get(f"/api/media/upload/{ticket['upload_id']}")
    assert status.body["status"] == "completed"


async def test_listing_shows_stored_parts(api: Api) -> None:
    ticket = await init(api, len(DATA))
    first = await put_part(api.session, ticket, 3, DATA[2 * PART :])
    reply = await api.get(f"/api/media/upload/{ticket['upload_id']}")
    assert reply.status == 200
    assert reply.body == {
        "upload_id": ticket["upload_id"],
        "status": "pending",
        "size": len(DATA),
        "part_size": PART,
        "parts": [{"part_number": 3, "size": 1, "etag": first.headers["ETag"]}],
        "expires_at": ticket["expires_at"],
    }
    missing = await api.get("/api/media/upload/upl_nope")
    assert (missing.status, missing.body["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize(
    ("headers", "data", "status"),
    [
        ({"X-API-Key": "gw_local_dev_key"}, DATA[:PART], 400),
        ({"Content-Type": "text/plain"}, DATA[:PART], 403),
        ({}, DATA[:100], 400),
    ],
)
async def test_part_put_refusals(
    api: Api, headers: dict[str, str], data: bytes, status: int
) -> None:
    ticket = await init(api, len(DATA))
    response = await put_part(api.session, ticket, 1, data, **headers)
    assert response.status == status


async def test_chunked_part_is_refused_411(api: Api) -> None:
    ticket = await init(api, len(DATA))

    async def body() -> Any:
        yield b"abc"  # refused on its headers, before the body matters

    response = await put_part(api.session, ticket, 1, body())  # type: ignore[arg-type]
    assert response.status == 411


async def test_tampered_part_url_is_refused_403(api: Api) -> None:
    ticket = await init(api, len(DATA))
    ticket["parts"][0]["upload_url"] = ticket["parts"][1]["upload_url"].replace(
        "/parts/2", "/parts/1"
    )
    assert (await put_part(api.session, ticket, 1, DATA[:PART])).status == 403


async def test_expired_part_url_403_then_refresh(api: Api, clock: FakeClock) -> None:
    ticket = await init(api, len(DATA))
    clock.advance(901)
    assert (await put_part(api.session, ticket, 1, DATA[:PART])).status == 403
    reply = await api.post(
        "/api/media/upload/parts", {"upload_id": ticket["upload_id"], "part_numbers": [1, 3]}
    )
    assert reply.status == 200, reply.text
    assert [p["part_number"] for p in reply.body["parts"]] == [1, 3]
    fresh = {**ticket, "parts": reply.body["parts"]}
    listed = [
        {
            "part_number": 1,
            "etag": (await put_part(api.session, fresh, 1, DATA[:PART])).headers["ETag"],
        }
    ]
    assert listed[0]["etag"].startswith('"')
    status = await api.get(f"/api/media/upload/{ticket['upload_id']}")
    assert status.body["expires_at"] == reply.body["expires_at"]  # the upload lives on


@pytest.mark.parametrize(
    ("numbers", "status"),
    [([], 422), ([0], 422), (["1"], 422), (None, 422), ([True], 422), ([1.5], 422), ([4], 409)],
)
async def test_refresh_validates_part_numbers(api: Api, numbers: Any, status: int) -> None:
    """Malformed part numbers are 422; a well-formed number of no part of this upload 409."""
    ticket = await init(api, len(DATA))
    body = {"upload_id": ticket["upload_id"], "part_numbers": numbers}
    reply = await api.post("/api/media/upload/parts", body)
    assert reply.status == status
    assert reply.body["error"]["details"] == {"field": "part_numbers"}


async def test_refresh_accepts_integral_floats(api: Api) -> None:
    ticket = await init(api, len(DATA))
    body = {"upload_id": ticket["upload_id"], "part_numbers": [2.0]}
    reply = await api.post("/api/media/upload/parts", body)
    assert [p["part_number"] for p in reply.body["parts"]] == [2]


async def test_refresh_of_a_single_upload_is_409(api: Api) -> None:
    ticket = await init(api, 10)
    reply = await api.post(
        "/api/media/upload/parts", {"upload_id": ticket["upload_id"], "part_numbers": [1]}
    )
    assert (reply.status, reply.body["error"]["details"]) == (409, {"field": "upload_id"})


async def test_complete_conflicts(api: Api) -> None:
    ticket = await init(api, len(DATA))
    listed = await put_all(api, ticket, DATA)
    upload_id = ticket["upload_id"]
    cases = [
        listed[:2],  # a part missing
        [listed[0], listed[1], {**listed[2], "etag": '"0000"'}],
        [listed[0], listed[1], {**listed[2], "sha256": "0" * 64}],
    ]
    for parts in cases:
        reply = await api.post(COMPLETE, {"upload_id": upload_id, "parts": parts})
        assert reply.status == 409, reply.text
        assert reply.body["error"]["details"] == {"field": "parts"}


async def test_complete_before_every_part_is_stored_is_409(api: Api) -> None:
    ticket = await init(api, len(DATA))
    listed = await put_all(api, ticket, DATA[: 2 * PART] + b"x")
    record = api.emulator.core.multipart.records[ticket["upload_id"]]
    del record.parts["2"]
    reply = await api.post(COMPLETE, {"upload_id": ticket["upload_id"], "parts": listed})
    assert (reply.status, reply.body["error"]["code"]) == (409, "invalid_part")
    assert "part 2 is not held by storage" in reply.body["error"]["message"]


async def test_complete_after_expiry_is_410(api: Api, clock: FakeClock) -> None:
    ticket = await init(api, len(DATA))
    listed = await put_all(api, ticket, DATA)
    clock.advance(901)
    reply = await api.post(COMPLETE, {"upload_id": ticket["upload_id"], "parts": listed})
    assert (reply.status, reply.body["error"]["code"]) == (410, "upload_expired")


@pytest.mark.parametrize(
    "parts", [None, [], [{"part_number": 1}], [{"part_number": 1, "etag": "x", "sha256": "z"}]]
)
async def test_complete_validates_parts(api: Api, parts: Any) -> None:
    ticket = await init(api, len(DATA))
    body: dict[str, Any] = {"upload_id": ticket["upload_id"]}
    if parts is not None:
        body["parts"] = parts
    reply = await api.post(COMPLETE, body)
    assert (reply.status, reply.body["error"]["details"]) == (422, {"field": "parts"})


@pytest.mark.parametrize(
    ("parts", "status"), [([{"part_number": 1, "etag": '"x"'}], 409), ([{}], 422)]
)
async def test_parts_on_a_single_upload(api: Api, parts: Any, status: int) -> None:
    """Well-formed parts for an upload that has none: 409; malformed ones: 422."""
    ticket = await init(api, 10)
    await api.put(ticket, b"0123456789")
    reply = await api.post(COMPLETE, {"upload_id": ticket["upload_id"], "parts": parts})
    assert (reply.status, reply.body["error"]["details"]) == (status, {"field": "parts"})


async def test_aborted_upload_answers_404_no_such_upload(api: Api, emu: Emulator) -> None:
    ticket = await init(api, len(DATA))
    emu.core.multipart.abort(ticket["upload_id"])
    response = await put_part(api.session, ticket, 1, DATA[:PART])
    assert response.status == 404
    assert "NoSuchUpload" in await response.text()


async def test_faults_apply_to_part_puts(api: Api, emu: Emulator) -> None:
    emu.set_faults(Faults(seed=1, routes={"PUT /storage": FaultSpec(error_503=1.0)}))
    ticket = await init(api, len(DATA))
    assert (await put_part(api.session, ticket, 1, DATA[:PART])).status == 503
    emu.set_faults(Faults(seed=1, routes={"PUT /storage": FaultSpec(reset=1.0)}))
    with pytest.raises(aiohttp.ClientError):
        await put_part(api.session, ticket, 1, DATA[:PART])
    assert emu.stats.faults_injected["503"] == 1
    assert emu.stats.faults_injected["reset"] >= 1  # aiohttp may retry once itself
    assert emu.core.multipart.records[ticket["upload_id"]].parts == {}


async def test_parts_survive_a_restart(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    options: dict[str, Any] = {
        "data_dir": tmp_path,
        "multipart_threshold": THRESHOLD,
        "multipart_part_size": PART,
    }
    async with Emulator(**options) as first:
        api = Api(session, first)
        ticket = await init(api, len(DATA))
        await put_part(session, ticket, 2, DATA[PART : 2 * PART])
    async with Emulator(**options) as second:
        reply = await Api(session, second).get(f"/api/media/upload/{ticket['upload_id']}")
        assert [p["part_number"] for p in reply.body["parts"]] == [2]


def test_cli_sizes() -> None:
    args = build_parser().parse_args(["--multipart-threshold", "64MiB"])
    assert (args.multipart_threshold, args.multipart_part_size) == (64 * 1024**2, 64 * 1024**2)
    assert build_parser().parse_args(["--multipart-part-size", "5000000"]).multipart_part_size == (
        5_000_000
    )
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--multipart-threshold", "lots"])

"""Drift check for contract version 2: the SDK's multipart models read what the emulator's
OpenAPI document promises, and the bodies the SDK sends validate against it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from gateway_async import Gateway
from gateway_async._upload.parts import MultipartTicket, PartsRefresh, UploadStatus
from gateway_async.emulator import Emulator
from gateway_async.emulator._openapi import document
from tests.emulator.test_drift import Schemas, record_bodies, response_drift
from tests.emulator.test_drift import schemas as schemas  # the module's fixture

from .conftest import PART, THRESHOLD

RESPONSES = {
    "MultipartTicket": MultipartTicket,
    "PartUrls": PartsRefresh,
    "UploadStatus": UploadStatus,
}
BODIES = {
    "/api/media/upload/init": "UploadInit",
    "/api/media/upload/parts": "PartsRefresh",
    "/api/media/upload/complete": "UploadComplete",
}


@pytest.mark.parametrize("name", list(RESPONSES))
def test_multipart_schemas_and_sdk_models_agree(schemas: Schemas, name: str) -> None:
    schema = {"$ref": f"#/components/schemas/{name}"}
    assert response_drift(schemas, schema, RESPONSES[name], name) == []


async def test_the_sdks_multipart_requests_validate(
    emu: Emulator, gw: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """init, a refresh and a multipart complete, as the SDK sends them, are schema-valid."""
    seen = record_bodies(monkeypatch)
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(PART + 1))
    expired: list[bool] = []

    def expire_once(event: Any) -> None:
        if not expired and event.bytes_sent:
            expired.append(True)
            emu.core.settings.clock.advance(1e10)  # type: ignore[attr-defined]

    await gw.media.upload(path, on_progress=expire_once, part_concurrency=1)
    components = document(emu.core)["components"]
    assert {p for p, _ in seen} == set(BODIES)
    assert THRESHOLD < PART + 1
    for where, body in seen:
        schema = {"$ref": f"#/components/schemas/{BODIES[where]}", "components": components}
        assert jsonschema_rs.validator_for(schema).is_valid(body), (where, body)

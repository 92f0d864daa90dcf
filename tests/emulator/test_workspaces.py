"""Workspaces (contract "Workspaces"): each API key belongs to one workspace, and the wallet,
usage, uploads, media, vector index, idempotency store and held content (version 3 dedup)
are per workspace. Issue 22 ("also seen": one shared workspace for every key, so no
isolation could be tested)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from gateway_async.emulator import Emulator
from gateway_async.emulator.cli import main

from .conftest import Api, FakeClock

SPACES = {"ws_a": ["key_a"], "ws_b": ["key_b", "key_b2"]}
DATA = b"workspace bytes " * 64
INIT = "/api/media/upload/init"
COMPLETE = "/api/media/upload/complete"


def as_key(api: Api, key: str) -> Api:
    other = Api(api.session, api.emulator)
    other.auth = {"X-API-Key": key}
    return other


@pytest_asyncio.fixture
async def spaces(
    clock: FakeClock, session: aiohttp.ClientSession
) -> AsyncIterator[tuple[Api, Api, Emulator]]:
    async with Emulator(clock=clock, workspaces=SPACES) as emu:
        api = Api(session, emu)
        yield as_key(api, "key_a"), as_key(api, "key_b"), emu


async def test_wallets_and_usage_are_per_workspace(spaces: tuple[Api, Api, Emulator]) -> None:
    a, b, emu = spaces
    assert (await a.run(model="demo-echo", input={"x": 1})).status == 200
    wallet_a = (await a.get("/api/billing/wallet")).body
    wallet_b = (await b.get("/api/billing/wallet")).body
    wallet_b2 = (await as_key(b, "key_b2").get("/api/billing/wallet")).body
    assert (wallet_a["workspace_id"], wallet_a["balance"]) == ("ws_a", "99.9990")
    assert (wallet_b["workspace_id"], wallet_b["balance"]) == ("ws_b", "100.0000")
    assert wallet_b2 == wallet_b
    assert (await a.get("/api/billing/usage/summary")).body["total_runs"] == 1
    assert (await b.get("/api/billing/usage/summary")).body["total_runs"] == 0
    emu.set_balance(Decimal("0"), workspace="ws_b")
    assert (await b.run(model="demo-echo", input={"x": 1})).status == 402
    assert (await a.run(model="demo-echo", input={"x": 1})).status == 200


async def test_uploads_and_media_are_per_workspace(spaces: tuple[Api, Api, Emulator]) -> None:
    a, b, _ = spaces
    ticket = await a.init(DATA)
    assert (await b.get(f"/api/media/upload/{ticket['upload_id']}")).status == 404
    assert (await a.put(ticket, DATA)).status == 200
    stolen = await b.post(COMPLETE, {"upload_id": ticket["upload_id"]})
    assert (stolen.status, stolen.body["error"]["details"]) == (404, {"field": "upload_id"})
    media_ref = (await a.post(COMPLETE, {"upload_id": ticket["upload_id"]})).body["media_ref"]
    run = {"model": "demo-image-embed", "input": {"image": media_ref}}
    refused = await b.post("/api/runs", run)
    assert (refused.status, refused.body["error"]["details"]) == (422, {"field": "input.image"})
    assert (await a.post("/api/runs", run)).status == 200


async def test_indexed_items_are_never_found_from_another_workspace(
    spaces: tuple[Api, Api, Emulator],
) -> None:
    a, b, _ = spaces
    text = {"model": "demo-text-embed", "scope": "s", "input": {"text": "red fox"}}
    assert (await a.post("/api/runs", {**text, "mode": "index"})).status == 200
    found_a = await a.post("/api/runs", {**text, "mode": "search"})
    found_b = await b.post("/api/runs", {**text, "mode": "search"})
    assert len(found_a.body["output"]["matches"]) == 1
    assert found_b.body["output"]["matches"] == []


async def test_idempotency_keys_are_per_workspace(spaces: tuple[Api, Api, Emulator]) -> None:
    a, b, emu = spaces
    key = {"Idempotency-Key": "same"}
    run = {"model": "demo-echo", "input": {"x": 1}}
    first = await a.post("/api/runs", run, headers=key)
    other = await b.post("/api/runs", run, headers=key)
    assert "Idempotent-Replayed" not in other.headers
    assert other.body["id"] != first.body["id"]
    assert emu.stats.executions == 2


async def test_held_content_is_per_workspace(spaces: tuple[Api, Api, Emulator]) -> None:
    """Version 3 dedup: another workspace's bytes never match (no cross-tenant probing)."""
    a, b, _ = spaces
    await a.upload(DATA)
    body = {
        "filename": "f.bin",
        "content_type": "application/octet-stream",
        "size": len(DATA),
        "sha256": hashlib.sha256(DATA).hexdigest(),
    }
    assert (await a.post(INIT, body)).status == 200
    assert (await b.post(INIT, body)).status == 201


async def test_workspaces_survive_a_restart(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    async with Emulator(data_dir=tmp_path, workspaces=SPACES) as emu:
        a, b = as_key(Api(session, emu), "key_a"), as_key(Api(session, emu), "key_b")
        media_ref = await a.upload(DATA)
    async with Emulator(data_dir=tmp_path, workspaces=SPACES) as emu:
        a, b = as_key(Api(session, emu), "key_a"), as_key(Api(session, emu), "key_b")
        run = {"model": "demo-image-embed", "input": {"image": media_ref}}
        assert (await a.post("/api/runs", run)).status == 200
        assert (await b.post("/api/runs", run)).status == 422
        assert (await b.get("/api/billing/wallet")).body["balance"] == "100.0000"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"workspaces": {"a": ["k"], "b": ["k"]}}, "one workspace"),
        ({"workspaces": {"a/b": ["k"]}}, "workspace name"),
        ({"workspaces": {"a": []}}, "at least one API key"),
        ({"workspaces": {"a": ["k"]}, "api_keys": ["j"]}, "not both"),
    ],
)
def test_bad_workspaces_are_refused(options: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Emulator(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "argv",
    [
        ["--workspace", "nokey"],
        ["--workspace", "a=k", "--api-key", "j"],
        ["--workspace", "a/b=k"],
    ],
)
def test_bad_workspace_flags_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--port", "0", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "workspace" in err


def test_workspace_flags_group_keys_by_name() -> None:
    from gateway_async.emulator.cli import _workspaces

    pairs = ["ws_a=k1", "ws_b=k2", "ws_a=k3"]
    assert _workspaces(pairs, None) == {"ws_a": ["k1", "k3"], "ws_b": ["k2"]}

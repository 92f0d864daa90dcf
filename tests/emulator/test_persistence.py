"""``data_dir``: media, vectors, wallet, usage and idempotency survive a restart."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import aiohttp

from gateway_async.emulator import Emulator

from .conftest import Api
from .test_vectors import solid


async def test_restart_keeps_index_search_wallet_and_replays(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with Emulator(data_dir=tmp_path) as first:
        api = Api(session, first)
        ref = await api.upload(solid((0, 200, 0)), "image/png")
        key = {"Idempotency-Key": "index-1"}
        body = {
            "model": "demo-image-embed",
            "mode": "index",
            "scope": "kept",
            "input": {"image": ref},
            "params": {"metadata": {"n": 1}},
        }
        indexed = await api.post("/api/runs", body, headers=key)
        await api.run(model="demo-text-embed", mode="index", scope="kept", input={"text": "hi"})
        ticket = await api.init(b"pending")
    assert (tmp_path / "state.sqlite3").exists()
    async with Emulator(data_dir=tmp_path, initial_balance=Decimal(5)) as second:
        api = Api(session, second)
        assert second.media_path(ref).read_bytes() == solid((0, 200, 0))
        assert second.stats.index_size("demo-image-embed", "kept") == 1
        found = await api.run(
            model="demo-image-embed", mode="search", scope="kept", input={"image": ref}
        )
        match = found.body["output"]["matches"][0]
        assert (match["id"], match["metadata"]) == (indexed.body["output"]["indexed"], {"n": 1})
        text = await api.run(
            model="demo-text-embed", mode="search", scope="kept", input={"text": "hi"}
        )
        assert text.body["output"]["matches"][0]["score"] == 1.0
        replay = await api.post("/api/runs", body, headers=key)
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert (await api.get("/api/billing/wallet")).body["balance"] == "99.9960"
        summary = (await api.get("/api/billing/usage/summary")).body
        assert summary["total_runs"] == 4
        old_origin = ticket["upload_url"].split("/storage/")[0]
        ticket["upload_url"] = ticket["upload_url"].replace(old_origin, second.storage_url)
        assert (await api.put(ticket, b"pending")).status == 200
        assert (
            await api.post("/api/media/upload/complete", {"upload_id": ticket["upload_id"]})
        ).status == 200

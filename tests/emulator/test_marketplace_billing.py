"""Marketplace listing (limit, cursor, q), model detail and slug encoding; wallet and
usage summary."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from yarl import URL

from gateway_async.emulator import Emulator

from .conftest import Api, FakeClock

MODEL_FIELDS = {
    "slug",
    "name",
    "description",
    "modes",
    "vector_modes",
    "input_schema",
    "params_schema",
    "price_per_run",
    "release",
}


async def test_demo_catalogue(api: Api) -> None:
    page = (await api.get("/api/marketplace/models")).body
    assert page["next_cursor"] is None
    models = {m["slug"]: m for m in page["data"]}
    assert set(models) == {"demo-echo", "demo-text-embed", "demo-image-embed"}
    assert all(set(m) == MODEL_FIELDS for m in models.values())
    image = models["demo-image-embed"]
    assert image["modes"] == ["execute", "index", "search"]
    assert image["vector_modes"] == ["index", "search"]
    assert image["input_schema"]["properties"]["image"]["format"] == "media_ref"
    assert (image["price_per_run"], image["release"]) == ("0.0010", "2026-11-01")
    assert models["demo-echo"]["vector_modes"] == []


async def test_pagination_walks_every_model_once(session: aiohttp.ClientSession) -> None:
    extra = [{"slug": f"extra-{i:03d}", "description": "Bulk" if i % 2 else ""} for i in range(230)]
    async with Emulator(extra_models=extra) as emu:
        api = Api(session, emu)
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 100} | ({"cursor": cursor} if cursor else {})
            page = (await api.get("/api/marketplace/models", params=params)).body
            seen += [m["slug"] for m in page["data"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert len(seen) == len(set(seen)) == 233
        default = (await api.get("/api/marketplace/models")).body
        assert len(default["data"]) == 50
        bulk = await api.get("/api/marketplace/models", params={"q": "BULK", "limit": 100})
        assert len(bulk.body["data"]) == 100
        assert bulk.body["next_cursor"] is not None


async def test_search_by_q(api: Api) -> None:
    page = (await api.get("/api/marketplace/models", params={"q": "PIXELS"})).body
    assert [m["slug"] for m in page["data"]] == ["demo-image-embed"]
    assert (await api.get("/api/marketplace/models", params={"q": "zzz"})).body["data"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": "b2s"}, "cursor"),
    ],
)
async def test_bad_list_parameters_are_422(api: Api, params: dict[str, str], field: str) -> None:
    reply = await api.get("/api/marketplace/models", params=params)
    assert (reply.status, reply.body["error"]["details"]) == (422, {"field": field})


async def test_model_detail_and_404(api: Api) -> None:
    detail = await api.get("/api/marketplace/models/demo-echo")
    assert detail.body["slug"] == "demo-echo"
    missing = await api.get("/api/marketplace/models/nope")
    assert (missing.status, missing.body["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize("raw", ["%2E%2E%2Fbilling", "%2E%2E%2Fbilling%2Fwallet", "a%2Fb"])
async def test_encoded_slug_stays_one_segment(api: Api, emu: Emulator, raw: str) -> None:
    url = URL(f"{emu.base_url}/api/marketplace/models/{raw}", encoded=True)
    reply = await api.call("GET", str(url), allow_redirects=False)
    assert reply.status == 404
    assert "balance" not in reply.text


async def test_wallet_shape(api: Api) -> None:
    wallet = (await api.get("/api/billing/wallet")).body
    assert wallet == {
        "workspace_id": "ws_emulator",
        "balance": "100.0000",
        "currency": "credits",
        "updated_at": "2026-11-18T11:06:40Z",
    }


async def test_usage_summary_by_model_and_window(api: Api, clock: FakeClock) -> None:
    await api.run(model="demo-echo", input={})
    clock.advance(3600)
    await api.run(model="demo-echo", input={})
    await api.run(model="demo-text-embed", input={"text": "x"})
    summary = (await api.get("/api/billing/usage/summary")).body
    assert summary["total_runs"] == 3
    assert summary["total_credits"] == "0.0030"
    assert summary["by_model"] == [
        {"model": "demo-echo", "runs": 2, "credits": "0.0020"},
        {"model": "demo-text-embed", "runs": 1, "credits": "0.0010"},
    ]
    assert summary["end"] == "2026-11-18T12:06:40Z"
    assert summary["start"] == "2026-10-19T12:06:40Z"
    window = {"start": "2026-11-18T11:30:00Z", "end": "2026-11-18T13:30:00+01:00"}
    later = (await api.get("/api/billing/usage/summary", params=window)).body
    assert (later["total_runs"], later["start"], later["end"]) == (
        2,
        "2026-11-18T11:30:00Z",
        "2026-11-18T12:30:00Z",
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "yesterday"}, "start"),
        ({"end": "2026-11-18"}, "end"),
        ({"start": "2026-11-18T10:00:00"}, "start"),
        ({"start": "2026-11-18 10:00:00Z"}, "start"),
        ({"start": "2026-W47-3T10:00:00Z"}, "start"),
    ],
)
async def test_usage_summary_bad_dates(api: Api, params: dict[str, str], field: str) -> None:
    reply = await api.get("/api/billing/usage/summary", params=params)
    assert (reply.status, reply.body["error"]["details"]) == (422, {"field": field})


async def test_start_after_end_is_an_empty_window(api: Api) -> None:
    """Every pair the schema allows is answered: a window that ends before it starts is empty."""
    await api.run(model="demo-echo", input={})
    window = {"start": "2026-11-19T00:00:00Z", "end": "2026-11-18T00:00:00Z"}
    summary = (await api.get("/api/billing/usage/summary", params=window)).body
    assert (summary["total_runs"], summary["start"], summary["by_model"]) == (
        0,
        "2026-11-19T00:00:00Z",
        [],
    )

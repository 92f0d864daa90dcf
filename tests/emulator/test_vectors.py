"""index and search: the item itself ranks first with score ~1, scopes never mix,
metadata rides along, top_k caps the list; for text and for uploaded images."""

from __future__ import annotations

import os
from typing import Any

import pytest

from gateway_async.emulator import Emulator
from gateway_async.emulator._png import encode

from .conftest import Api

TEXTS = ["the quick brown fox", "a slow green turtle", "quantum field theory lecture"]


def solid(rgb: tuple[int, int, int], size: int = 16) -> bytes:
    return encode(size, size, bytes(rgb) * size * size)


def gradient(size: int = 16) -> bytes:
    pixels = bytes(v for y in range(size) for x in range(size) for v in (x * 16, y * 16, 128))
    return encode(size, size, pixels)


async def index_text(api: Api, text: str, scope: str = "test", **metadata: str) -> str:
    reply = await api.run(
        model="demo-text-embed",
        mode="index",
        scope=scope,
        input={"text": text},
        params={"metadata": metadata},
    )
    assert reply.status == 200, reply.text
    assert reply.body["output"]["dimensions"] == 256
    item: str = reply.body["output"]["indexed"]
    return item


async def search_text(
    api: Api, text: str, scope: str = "test", **params: int
) -> list[dict[str, Any]]:
    reply = await api.run(
        model="demo-text-embed", mode="search", scope=scope, input={"text": text}, params=params
    )
    assert reply.status == 200, reply.text
    matches: list[dict[str, Any]] = reply.body["output"]["matches"]
    return matches


@pytest.mark.parametrize("query", TEXTS)
async def test_text_search_finds_the_indexed_item_first(api: Api, query: str) -> None:
    ids = {text: await index_text(api, text, title=text) for text in TEXTS}
    matches = await search_text(api, query)
    assert matches[0]["id"] == ids[query]
    assert matches[0]["score"] == pytest.approx(1.0)
    assert matches[0]["metadata"] == {"title": query}
    assert matches[0]["media_ref"] is None
    assert all(m["score"] < 0.9 for m in matches[1:])
    assert [m["score"] for m in matches] == sorted((m["score"] for m in matches), reverse=True)


async def test_similar_text_scores_higher_than_unrelated(api: Api) -> None:
    for text in TEXTS:
        await index_text(api, text)
    matches = await search_text(api, "the quick brown dog")
    assert matches[0]["score"] > matches[-1]["score"]
    assert matches[0]["score"] < 1.0


async def test_scopes_are_isolated_and_counted(api: Api, emu: Emulator) -> None:
    await index_text(api, "only in a", scope="a")
    await index_text(api, "only in b", scope="b")
    await index_text(api, "also in b", scope="b")
    assert [len(await search_text(api, "only", scope=s)) for s in ("a", "b", "c")] == [1, 2, 0]
    assert (emu.stats.index_size("demo-text-embed", "b"), emu.stats.index_size("x", "b")) == (2, 0)


async def test_top_k_caps_matches(api: Api) -> None:
    for i in range(12):
        await index_text(api, f"document number {i}")
    assert len(await search_text(api, "document")) == 10
    assert len(await search_text(api, "document", top_k=3)) == 3


async def test_image_search_ranks_by_pixels_and_bytes(api: Api) -> None:
    images = {
        "red": solid((250, 10, 10)),
        "blue": solid((10, 10, 250)),
        "gradient": gradient(),
        "noise": os.urandom(3000),
    }
    refs = {}
    for name, data in images.items():
        refs[name] = await api.upload(data, "image/png")
        reply = await api.run(
            model="demo-image-embed",
            mode="index",
            scope="imgs",
            input={"image": refs[name]},
            params={"metadata": {"name": name}},
        )
        assert reply.status == 200, reply.text
    for name, ref in refs.items():
        reply = await api.run(
            model="demo-image-embed",
            mode="search",
            scope="imgs",
            input={"image": ref},
            params={"top_k": 2},
        )
        matches = reply.body["output"]["matches"]
        assert len(matches) == 2
        assert (matches[0]["media_ref"], matches[0]["metadata"]) == (ref, {"name": name})
        assert matches[0]["score"] == pytest.approx(1.0)
        assert matches[1]["score"] < 0.99
    execute = await api.run(model="demo-image-embed", input={"image": refs["red"]})
    assert len(execute.body["output"]["embedding"]) == 256


async def test_similar_colours_are_closer_than_different_ones(api: Api) -> None:
    refs = [await api.upload(solid(c)) for c in [(250, 10, 10), (200, 20, 20), (10, 10, 250)]]
    for ref in refs[1:]:
        await api.run(model="demo-image-embed", mode="index", scope="s", input={"image": ref})
    reply = await api.run(
        model="demo-image-embed", mode="search", scope="s", input={"image": refs[0]}
    )
    matches = reply.body["output"]["matches"]
    assert [m["media_ref"] for m in matches] == refs[1:]
    assert matches[0]["score"] > matches[1]["score"]

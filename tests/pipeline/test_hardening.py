"""Breaks an adversarial review found in ``gw.ingest``'s options: each refused at the call,
typed, naming the argument, before any request or byte."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from gateway_async import Gateway, GatewayError, InvalidRequestError
from gateway_async.emulator import Emulator

from .conftest import MakeFiles

BAD = [
    ({"scope": "my photos"}, "scope", "'my photos' is not a valid scope"),
    ({}, "scope", "required for mode 'index'"),
    ({"mode": "search"}, "scope", "required for mode 'search'"),
    ({"mode": ""}, "mode", "non-empty string"),
    ({"scope": "s", "max_spend": Decimal("-1")}, "max_spend", "negative"),
]


@pytest.mark.parametrize(("options", "field", "says"), BAD)
async def test_bad_ingest_options_are_refused_before_any_byte(
    gw: Gateway, emu: Emulator, make_files: MakeFiles, options: Any, field: str, says: str
) -> None:
    """A bad scope, no scope for a vector mode, a negative cap: refused when ``ingest()`` is
    called (they used to upload every file, then fail each item)."""
    files = make_files(2)
    with pytest.raises(InvalidRequestError, match=says) as caught:
        gw.ingest(files, model="demo-image-embed", **options)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert sum(emu.stats.requests_by_route.values()) == emu.stats.puts == 0


async def test_good_edges_of_the_same_options_still_ingest(
    gw: Gateway, emu: Emulator, make_files: MakeFiles
) -> None:
    """The seam: a zero cap and a scope-less non-vector mode are still accepted."""
    gw.ingest(make_files(1), model="demo-image-embed", scope="s", max_spend=Decimal("0"))
    ingest = gw.ingest(
        make_files(1, folder="x"), model="demo-echo", mode="execute", input_field="file"
    )
    async with ingest:
        items = [item async for item in ingest]
    assert [item.ok for item in items] == [True]


@pytest.mark.parametrize("name", ["upload_concurency", "scopes"])
async def test_an_unknown_option_is_named_with_the_accepted_ones(gw: Gateway, name: str) -> None:
    """A typo is a typed error naming it and listing what ingest() takes; still a TypeError,
    as Python's own unexpected-keyword error is, for code that catches that."""
    with pytest.raises(InvalidRequestError) as caught:
        gw.ingest([b"x"], model="demo-image-embed", scope="s", **{name: 4})  # type: ignore[misc]
    message = str(caught.value)
    assert isinstance(caught.value, TypeError)
    assert caught.value.field == name
    assert message.startswith(f"{name}: ingest() takes no such option")
    assert "upload_concurrency, run_concurrency" in message
    assert "Settings" not in message
    gw.ingest([b"x"], model="demo-image-embed", scope="s", job="photos-1")  # a real one


async def test_a_missing_model_is_named(gw: Gateway) -> None:
    with pytest.raises(GatewayError, match=r"^model: required") as caught:
        gw.ingest([b"x"], scope="s")  # type: ignore[call-arg]
    assert isinstance(caught.value, InvalidRequestError)

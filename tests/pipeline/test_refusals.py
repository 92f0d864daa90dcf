"""Refusals before money: what cannot be useful is refused before any upload or run, in the
caller's words; and the ingest's objects print as one readable line."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gateway_async import (
    ConfigurationError,
    Gateway,
    InvalidRequestError,
    RunRequest,
    Timeouts,
)
from gateway_async.emulator import Emulator

from .conftest import MakeFiles


def nothing_spent(emu: Emulator) -> tuple[int, int, int]:
    return (emu.stats.uploads_initiated, emu.stats.executions, emu.stats.charges)


async def test_ingest_with_a_text_model_uploads_nothing(
    gw: Gateway, emu: Emulator, make_files: MakeFiles
) -> None:
    """A text model over image files: refused before the first upload (it used to upload
    each file and index its media_ref string as text, charged)."""
    ingest = gw.ingest(make_files(3), model="demo-text-embed", scope="t")
    with pytest.raises(InvalidRequestError, match="none of them media") as caught:
        async for _ in ingest:
            pass
    assert caught.value.field == "input_field"
    assert "'text'" in str(caught.value)
    assert nothing_spent(emu) == (0, 0, 0)


async def test_ingest_refuses_a_field_that_is_not_a_media_field(
    gw: Gateway, emu: Emulator, make_files: MakeFiles
) -> None:
    ingest = gw.ingest(make_files(2), model="demo-image-embed", scope="t", input_field="text")
    with pytest.raises(InvalidRequestError, match=r"takes media in 'image', not 'text'"):
        async for _ in ingest:
            pass
    assert nothing_spent(emu) == (0, 0, 0)


async def test_the_model_is_fetched_once_per_client(
    gw: Gateway, emu: Emulator, make_files: MakeFiles
) -> None:
    files = make_files(2)
    for scope in ("a", "b"):
        async with gw.ingest(files, model="demo-image-embed", scope=scope) as ingest:
            assert all([item.ok async for item in ingest])
    assert emu.stats.requests_by_route["GET /api/marketplace/models/{slug}"] == 1


@pytest.mark.parametrize(
    "single", ["data.png", b"pixels", Path("data.png")], ids=["str", "bytes", "Path"]
)
async def test_one_source_where_many_are_expected(
    gw: Gateway, emu: Emulator, tmp_path: Path, single: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``upload_many("data.png")`` used to upload each character ('a' twice, a file of that
    name being there); ``ingest`` and ``create_many`` refuse the same mistake."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").write_bytes(b"an unrelated file")
    (tmp_path / "data.png").write_bytes(b"pixels")
    with pytest.raises(InvalidRequestError, match=r"sources: expected an iterable") as caught:
        await gw.media.upload_many(single)  # type: ignore[arg-type]
    assert "pass a list" in str(caught.value)
    with pytest.raises(InvalidRequestError, match=r"sources: expected an iterable"):
        gw.ingest(single, model="demo-image-embed", scope="s")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match=r"requests: expected an iterable of RunReq"):
        await gw.runs.create_many(single)  # type: ignore[arg-type]
    assert nothing_spent(emu) == (0, 0, 0)


async def test_a_run_input_the_schema_refuses_is_not_sent(gw: Gateway, emu: Emulator) -> None:
    """``input="hello"`` for a model whose schema takes an object went to the server for a
    422; it is refused locally, naming the argument and the fix."""
    with pytest.raises(InvalidRequestError, match=r"input: demo-text-embed takes a JSON object"):
        await gw.runs.create(model="demo-text-embed", input="hello")
    results = await gw.runs.create_many([RunRequest(model="demo-text-embed", input=["x"])])
    assert isinstance(results[0], InvalidRequestError)
    assert emu.stats.requests_by_route["POST /api/runs"] == 0
    # an object goes as it is: no extra request for the usual run
    run = await gw.runs.create(model="demo-echo", input={"any": 1})
    assert run.succeeded


async def test_ingest_checks_each_input_against_the_schema(
    gw: Gateway, emu: Emulator, make_files: MakeFiles
) -> None:
    """``input=`` building what the model cannot take: each item fails before its run."""
    ingest = gw.ingest(
        make_files(2), model="demo-image-embed", scope="s", input=lambda ref, _: {"img": ref}
    )
    async with ingest:
        items = [item async for item in ingest]
    assert [type(item.error).__name__ for item in items] == ["InvalidRequestError"] * 2
    assert "requires 'image'" in str(items[0].error)
    assert emu.stats.executions == 0


async def test_api_messages_speak_the_callers_words(gw: Gateway) -> None:
    with pytest.raises(ConfigurationError, match=r"^timeout must be") as caught:
        await gw.billing.wallet(timeout=-1)
    assert "total" not in str(caught.value)
    with pytest.raises(ConfigurationError, match=r"^timeout must be"):
        Gateway(api_key="k", base_url="http://127.0.0.1:1", timeout=-1)
    with pytest.raises(InvalidRequestError, match=r'max_spend=Decimal\("5"\)'):
        gw.ingest([b"x"], model="demo-image-embed", max_spend=5)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match=r'max_spend=Decimal\("0.5"\)'):
        gw.ingest([b"x"], model="demo-image-embed", max_spend=0.5)  # type: ignore[arg-type]


async def test_a_timeout_names_the_deadline_and_how_to_change_it(emu: Emulator) -> None:
    from gateway_async import APITimeoutError
    from gateway_async.emulator import Faults, FaultSpec

    emu.set_faults(Faults(seed=1, routes={"GET /api/billing/wallet": FaultSpec(latency=(5, 5))}))
    async with emu.client(max_retries=0) as gw:
        with pytest.raises(APITimeoutError) as caught:
            await gw.billing.wallet(timeout=0.2)
        assert "timeout=0.2 s" in str(caught.value)
        assert "pass timeout=SECONDS" in str(caught.value)
        with pytest.raises(APITimeoutError, match=r"Timeouts\(attempt=0.1\)"):
            await gw.billing.wallet(timeout=Timeouts(total=10, attempt=0.1))


async def test_summary_and_ingest_print_one_readable_line(
    gw: Gateway, make_files: MakeFiles
) -> None:
    ingest = gw.ingest(make_files(3), model="demo-image-embed", scope="s")
    assert repr(ingest).startswith("<Ingest demo-image-embed index into 's', not started: 0 ")
    async with ingest:
        async for _ in ingest:
            pass
    text = str(ingest.summary)
    assert "\n" not in text
    assert text.startswith("3 succeeded, 0 failed, 0 skipped of 3 in ")
    assert "3 uploaded" in text
    assert "0.0030 credits" in text
    assert "Decimal" not in text
    assert repr(ingest).startswith("<Ingest demo-image-embed index into 's', ended: 3 succeeded")
    assert Decimal(text.split("; ")[-1].split()[0]) == ingest.summary.credits

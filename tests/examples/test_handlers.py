"""The examples' functions, called in-process against the emulator."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

from gateway_async import Gateway, InvalidRequestError
from gateway_async.emulator import Emulator
from gateway_async.pipeline import IngestItem, Journal

from ..pipeline.conftest import MakeFiles


def load(name: str) -> ModuleType:
    """An example as the web servers import it: ``examples.<name>``."""
    return importlib.import_module(f"examples.{name}")


async def test_batch_index_resumes_and_respects_the_cap(
    emu: Emulator, gw: Gateway, make_files: MakeFiles, tmp_path: Path
) -> None:
    """A capped first pass, an uncapped second: every file indexed once, then searchable."""
    example = load("batch_index")
    files = make_files(10)
    journal = tmp_path / "batch.db"
    folder = files[0].parent
    first = await example.index_folder(
        gw, folder, scope="b", journal=journal, max_spend=Decimal("0.004")
    )
    second = await example.index_folder(gw, folder, scope="b", journal=journal, max_spend=None)
    matches = await example.search_like(gw, files[3], scope="b")
    assert (first.succeeded, first.stopped) == (4, "budget")
    assert (second.skipped, second.succeeded) == (4, 6)
    assert emu.stats.index_size("demo-image-embed", "b") == 10
    assert matches[0]["metadata"] == {"file": files[3].name}


async def test_ingest_worker_stops_gracefully(
    emu: Emulator, gw: Gateway, make_files: MakeFiles, tmp_path: Path
) -> None:
    """Paths from a queue are indexed; a stop request ends the worker without losing any."""
    example = load("ingest_worker")
    queue: asyncio.Queue[Path | None] = asyncio.Queue()
    stopping = asyncio.Event()
    for path in make_files(5):
        queue.put_nowait(path)
    done: list[IngestItem] = []

    def on_item(item: IngestItem) -> None:
        done.append(item)
        if len(done) == 5:
            stopping.set()  # as the SIGTERM handler does

    async with await Journal.open(tmp_path / "w.db") as journal:
        summary = await example.run_worker(
            gw, queue, scope="w", journal=journal, stopping=stopping, on_item=on_item
        )
    assert (summary.succeeded, summary.stopped) == (5, "stopped")


async def test_fastapi_backend_handlers_stream_bodies_through(emu: Emulator, gw: Gateway) -> None:
    """The handlers' logic, with no web framework: chunks in (the last one empty, as
    Starlette sends), an indexed image, then a search."""
    example = load("image_search")
    data = b"\x89PNG not really" * 1000

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 4096):
            yield data[start : start + 4096]
        yield b""  # as Starlette's request.stream() ends

    size = example.content_length({"content-length": str(len(data))})
    indexed = await example.index_image(
        gw, body(), size=size, content_type="image/png", scope="api", filename="x.png"
    )
    matches = await example.search_image(
        gw, body(), size=size, content_type="image/png", scope="api"
    )
    assert emu.media_path(indexed["media_ref"]).read_bytes() == data
    assert matches[0]["metadata"] == {"filename": "x.png"}
    with pytest.raises(InvalidRequestError):
        example.content_length({})

"""The examples in ``examples/`` run against the emulator."""

from __future__ import annotations

import asyncio
import importlib.util
import signal
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

from gateway_async import Gateway, InvalidRequestError
from gateway_async.emulator import Emulator
from gateway_async.pipeline import IngestItem, Journal

from ..cli.conftest import clean_env
from .conftest import MakeFiles

EXAMPLES = Path(__file__).parents[2] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_ingest_worker_exits_cleanly_on_sigterm(
    emu: Emulator, make_files: MakeFiles, tmp_path: Path
) -> None:
    """The real script: SIGTERM mid-stream prints a summary and exits 0."""
    env = clean_env(GATEWAY_API_KEY=emu.api_key, GATEWAY_BASE_URL=emu.base_url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "ingest_worker.py"),
        "--journal",
        str(tmp_path / "w.db"),
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert await proc.stdout.readline() == b"ready\n"
    files = make_files(3)
    proc.stdin.write(b"".join(f"{p}\n".encode() for p in files))
    await proc.stdin.drain()
    lines = [await proc.stdout.readline() for _ in files]
    proc.send_signal(signal.SIGTERM)
    rest, _ = await proc.communicate()
    assert sorted(lines) == sorted(f"indexed {p}\n".encode() for p in files)
    assert proc.returncode == 0
    assert b"stopped='stopped'" in rest


async def test_fastapi_backend_handlers_stream_bodies_through(emu: Emulator, gw: Gateway) -> None:
    """The handlers' logic, without FastAPI: chunks in, an indexed image, then a search."""
    example = load("fastapi_backend")
    data = b"\x89PNG not really" * 1000

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 4096):
            yield data[start : start + 4096]

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

"""Fixtures of the pipeline tests: an in-process emulator, a client of it, files to ingest."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from gateway_async import Gateway, testing
from gateway_async.emulator import Emulator

MakeFiles = Callable[..., list[Path]]


gateway = testing.gateway  # the shared fixture, under its own name
gateway_emulator = testing.gateway_emulator  # the shared fixture, under its own name


@pytest.fixture
def emu(gateway_emulator: Emulator) -> Emulator:
    return gateway_emulator


@pytest_asyncio.fixture
async def gw(gateway: Gateway) -> AsyncIterator[Gateway]:
    yield gateway
    assert not leftover_tasks(), "the ingest left tasks behind"


def leftover_tasks() -> list[asyncio.Task[object]]:
    """Tasks of the ingest engine still alive (the emulator's own handlers are not counted)."""
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and "Ingest." in getattr(task.get_coro(), "__qualname__", "")
    ]


@pytest.fixture
def make_files(tmp_path: Path) -> MakeFiles:
    """``make_files(n)``: n small files with distinct content, named in order."""

    def make(n: int, *, folder: str = "files", content: bytes | None = None) -> list[Path]:
        root = tmp_path / folder
        root.mkdir(exist_ok=True)
        paths = []
        for i in range(n):
            path = root / f"{i:05d}.bin"
            path.write_bytes(content if content is not None else f"file {i} {folder}".encode())
            paths.append(path)
        return paths

    return make


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

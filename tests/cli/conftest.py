"""Fixtures of the CLI tests: an in-process emulator and a runner of the real entry point."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
import pytest_asyncio

from gateway_async import testing
from gateway_async.emulator import Emulator


@attrs.frozen
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines()]


Cli = Callable[..., Awaitable[Result]]


gateway_emulator = testing.gateway_emulator  # the shared fixture, under its own name


@pytest.fixture
def emu(gateway_emulator: Emulator) -> Emulator:
    return gateway_emulator


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return {**env, **extra}


@pytest_asyncio.fixture
async def cli(emu: Emulator) -> Cli:
    """``await cli("wallet", "--json")``: ``python -m gateway_async`` configured by env."""

    async def run(*args: str, env: dict[str, str] | None = None) -> Result:
        if env is None:
            env = clean_env(GATEWAY_API_KEY=emu.api_key, GATEWAY_BASE_URL=emu.base_url)
        return await run_cli(*args, env=env)

    return run


async def run_cli(*args: str, env: dict[str, str]) -> Result:
    """The CLI as a subprocess; the loop keeps serving the emulator meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway_async",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())

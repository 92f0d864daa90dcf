"""Fixtures of the CLI tests: an in-process emulator and a runner of the real entry point."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import re
import struct
import sys
import termios
from collections.abc import AsyncIterator, Awaitable, Callable
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


async def spawn_cli(*args: str, env: dict[str, str], **pipes: Any) -> asyncio.subprocess.Process:
    """``python -m gateway_async *args`` started; ``pipes``: stdin/stdout/stderr."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway_async", *args, env=env, **pipes
    )


async def run_cli(*args: str, env: dict[str, str]) -> Result:
    """The CLI as a subprocess; the loop keeps serving the emulator meanwhile."""
    pipe = asyncio.subprocess.PIPE
    proc = await spawn_cli(*args, env=env, stdout=pipe, stderr=pipe)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]")


def screen_lines(raw: bytes) -> list[str]:
    """What a terminal shows, line by line: escape codes dropped, each ``\\r`` a redraw."""
    text = ANSI.sub("", raw.decode(errors="replace"))
    return [part for line in text.split("\n") for part in line.split("\r") if part.strip()]


@attrs.define
class Terminal:
    """The CLI with stderr on a pseudo-terminal of ``columns`` x 20 (stdout a pipe)."""

    proc: asyncio.subprocess.Process
    master: int
    screen: bytearray = attrs.field(factory=bytearray)
    _more: asyncio.Event = attrs.field(factory=asyncio.Event)
    _reading: bool = True

    def on_readable(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed its end
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
            self._reading = False
        self.screen.extend(data)
        self._more.set()

    async def wait_for(self, pattern: str) -> str:
        """The first screen line matching ``pattern`` (fails if the CLI exits first)."""
        async with asyncio.timeout(60):
            while True:
                found = [line for line in screen_lines(self.screen) if re.search(pattern, line)]
                if found:
                    return found[0]
                if self.proc.returncode is not None:
                    raise AssertionError(f"no {pattern!r} on screen:\n{self.screen!r}")
                self._more.clear()
                await self._more.wait()

    @property
    def lines(self) -> list[str]:
        return screen_lines(self.screen)

    async def finish(self) -> tuple[int, str]:
        """Exit status and stdout, once the CLI has ended and its screen is drained."""
        assert self.proc.stdout is not None
        out = await self.proc.stdout.read()
        code = await self.proc.wait()
        while self._reading:  # until EOF/EIO on the pty after the child exits
            self._more.clear()
            await self._more.wait()
        return code, out.decode()


@contextlib.asynccontextmanager
async def terminal(*args: str, env: dict[str, str], columns: int = 80) -> AsyncIterator[Terminal]:
    """Run the CLI with stderr on a pty; stdout is read as a pipe meanwhile."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 20, columns, 0, 0))
    os.set_blocking(master, False)
    env = {**env, "COLUMNS": str(columns), "TERM": "xterm-256color"}
    proc = await spawn_cli(*args, env=env, stdout=asyncio.subprocess.PIPE, stderr=slave)
    os.close(slave)
    term = Terminal(proc, master)
    asyncio.get_running_loop().add_reader(master, term.on_readable)
    try:
        yield term
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        asyncio.get_running_loop().remove_reader(master)
        os.close(master)

"""Fixtures of the example tests: the pipeline's emulator and files, and the examples run
as real programs (subprocesses) against that emulator."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import attrs

from gateway_async.emulator import Emulator, Faults, FaultSpec

from ..cli.conftest import clean_env
from ..pipeline.conftest import emu, gateway, gateway_emulator, gw, make_files

__all__ = [
    "REPO",
    "Program",
    "curl_commands",
    "emu",
    "example_env",
    "free_port",
    "gateway",
    "gateway_emulator",
    "gw",
    "make_files",
    "slow_runs",
    "start",
]

REPO = Path(__file__).parents[2]
READY_TIMEOUT = 60.0
_CURL = re.compile(r"curl --data-binary @\S+ -H '([^:]+): ([^']+)' '([^']+)'")


def example_env(emulator: Emulator) -> dict[str, str]:
    """The environment the examples read (and unbuffered output, to see it line by line)."""
    return clean_env(
        GATEWAY_API_KEY=emulator.api_key,
        GATEWAY_BASE_URL=emulator.base_url,
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(REPO),
    )


def free_port() -> int:
    """A port nobody listens on (uvicorn's CLI cannot report the port it got for 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def curl_commands(module: str) -> list[tuple[str, str, str]]:
    """The ``curl`` commands of an example's docstring: (header, value, url) each."""
    text = (REPO / "examples" / f"{module}.py").read_text()
    return [(m[1], m[2], m[3]) for m in _CURL.finditer(text)]


def slow_runs(emulator: Emulator, seconds: float = 0.05) -> None:
    """Every run takes ``seconds``: a signal sent after the first result lands mid-run."""
    spec = FaultSpec(latency=(seconds, seconds))
    emulator.set_faults(Faults(seed=1, routes={"POST /api/runs": spec}))


@attrs.define
class Program:
    """A running example: its output lines as they come (stdout and stderr merged unless
    ``stderr`` was kept apart), and a way to stop it."""

    proc: asyncio.subprocess.Process
    lines: list[str] = attrs.field(factory=list)
    _seen: asyncio.Event = attrs.field(factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode())
            self._seen.set()

    async def wait_for(self, pattern: str) -> re.Match[str]:
        """The first output line matching ``pattern`` (fails if the program exits first)."""
        async with asyncio.timeout(READY_TIMEOUT):
            while True:
                for line in self.lines:
                    if found := re.search(pattern, line):
                        return found
                if self._reader is not None and self._reader.done():
                    raise AssertionError(f"exited without {pattern!r}:\n{self.output}")
                self._seen.clear()
                await self._seen.wait()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    async def interrupt(self) -> int:
        """SIGINT, then the exit status once all output is read."""
        self.proc.send_signal(signal.SIGINT)
        return await self.finish()

    async def finish(self) -> int:
        if self._reader is not None:
            await self._reader
        return await self.proc.wait()


@contextlib.asynccontextmanager
async def start(
    *argv: str, env: dict[str, str], stdin: int | None = None, stderr_apart: bool = False
) -> AsyncIterator[Program]:
    """Run ``argv`` in the repository; SIGINT and reap it on the way out."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=REPO,
        env=env,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if stderr_apart else asyncio.subprocess.STDOUT,
    )
    program = Program(proc)
    program._reader = asyncio.create_task(program.read())
    try:
        yield program
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
        await program.finish()
        if proc.stderr is not None:
            await proc.stderr.read()

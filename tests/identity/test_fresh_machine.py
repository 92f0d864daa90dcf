"""Exactly once from any process on any machine, with no local state required (issue #20).

A child process ingests 200 files with ``job=`` and a journal and is SIGKILLed midway; its
folder (journal included) is deleted, as a container's disk is; a second process in a new
folder, without any journal, reruns the job. By the server's counts: one execution per
file, and no PUT for content already held. Then ``os.utime`` on every file and a third
run: nothing executed, nothing sent. And two processes on one job at once, without a
journal: one execution per file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway_async.emulator import Emulator
from gateway_async.emulator._png import encode

from ._child import MODEL, SCOPE

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120.0


def photos(folder: Path, n: int) -> list[Path]:
    """``n`` small PNGs with distinct content, the same on every call (another machine)."""
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        paths.append(folder / f"img{i:03d}.png")
        paths[-1].write_bytes(encode(2, 2, hashlib.sha256(b"%d" % i).digest()[:12]))
    return paths


async def child(emu: Emulator, folder: Path, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.identity._child",
        *("--base-url", emu.base_url, "--api-key", emu.api_key),
        *("--folder", str(folder), "--job", "photos-2026-12", *extra),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode in (0, -signal.SIGKILL), err.decode()[-3000:]
    return proc.returncode, [json.loads(line) for line in out.decode().splitlines()]


def executions(emu: Emulator) -> tuple[int, set[int]]:
    return emu.stats.executions, set(emu.stats.executions_by_idempotency_key.values())


@pytest.mark.timeout(300)
async def test_a_killed_job_reruns_on_a_fresh_machine_exactly_once(
    gateway_emulator: Emulator, tmp_path: Path
) -> None:
    emu, n = gateway_emulator, 200
    machine_a = tmp_path / "a"
    photos(machine_a / "photos", n)
    code, first = await child(
        emu, machine_a / "photos", "--journal", str(machine_a / "j.db"), "--kill-after", "80"
    )
    assert code == -signal.SIGKILL
    assert len(first) == 80
    shutil.rmtree(machine_a)  # the container's disk is gone, journal and all

    held = len(emu.core.state.held)
    puts = emu.stats.puts
    machine_b = tmp_path / "b"
    photos(machine_b / "photos", n)
    code, second = await child(emu, machine_b / "photos")
    assert code == 0
    assert [line["error"] for line in second] == [None] * n
    assert executions(emu) == (n, {1})  # one execution per file, over both processes
    assert emu.stats.index_size(MODEL, SCOPE) == n
    assert emu.stats.puts - puts == n - held  # no PUT for content already held
    assert emu.stats.uploads_completed == n

    for path in (machine_b / "photos").iterdir():
        path.touch()  # os.utime: new mtimes, same bytes
    puts, requests = emu.stats.puts, emu.stats.requests_by_route.copy()
    code, third = await child(emu, machine_b / "photos")
    assert code == 0
    assert [line["error"] for line in third] == [None] * n
    assert executions(emu) == (n, {1})  # nothing executed
    assert emu.stats.puts == puts  # nothing sent
    assert emu.stats.uploads_completed == n
    asked = emu.stats.requests_by_route - requests
    assert set(asked) <= {
        "POST /api/media/upload/init",
        "POST /api/runs",
        "GET /api/marketplace/models/{slug}",
        "GET /api/media/upload/{upload_id}",
        "POST /api/media/upload/complete",
    }


@pytest.mark.timeout(300)
async def test_two_processes_on_one_job_at_once_execute_each_file_once(
    gateway_emulator: Emulator, tmp_path: Path
) -> None:
    emu, n = gateway_emulator, 40
    folder = tmp_path / "photos"
    photos(folder, n)
    results = await asyncio.gather(child(emu, folder), child(emu, folder))
    for code, lines in results:
        assert code == 0
        assert [line["error"] for line in lines] == [None] * n
    assert executions(emu) == (n, {1})
    assert emu.stats.charges == n
    assert emu.stats.index_size(MODEL, SCOPE) == n
    assert emu.stats.uploads_completed == n

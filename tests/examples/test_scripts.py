"""The command-line examples as real programs: a run, Ctrl-C (SIGINT) in the middle of one
(one clean line, no traceback, the documented exit status), and a rerun that resumes."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from gateway_async.emulator import Emulator

from ..pipeline.conftest import MakeFiles
from .conftest import example_env, slow_runs, start

MODEL = "demo-image-embed"


def script(name: str) -> str:
    return str(Path("examples") / f"{name}.py")


async def test_batch_index_ctrl_c_then_resume(
    emu: Emulator, make_files: MakeFiles, tmp_path: Path
) -> None:
    """SIGINT mid-run: exit 130 and one line saying how to resume; the rerun with the same
    journal indexes the rest, and every file ends up indexed exactly once."""
    files = make_files(150)  # 32 runs at a time, 0.4 s each: ~2 s left after the first
    argv = (sys.executable, script("batch_index"), str(files[0].parent), "--scope", "b")
    argv += ("--journal", str(tmp_path / "b.db"))
    slow_runs(emu, 0.4)
    async with start(*argv, env=example_env(emu), stderr_apart=True) as first:
        await first.wait_for(r"^indexed ")
        code = await first.interrupt()
        assert first.proc.stderr is not None
        err = (await first.proc.stderr.read()).decode()
    done_first = first.output.count("indexed ")
    emu.set_faults(None)
    async with start(*argv, env=example_env(emu), stderr_apart=True) as second:
        assert await second.finish() == 0, second.output
    assert code == 130
    assert err.strip().splitlines() == ["interrupted: rerun with the same --journal to resume"]
    assert 0 < done_first < len(files)
    assert second.output.count("skipped ") >= done_first
    assert emu.stats.index_size(MODEL, "b") == len(files)


async def test_ingest_worker_ctrl_c_then_resume(
    emu: Emulator, make_files: MakeFiles, tmp_path: Path
) -> None:
    """SIGINT stops taking paths, lets in-flight items finish, prints one summary line and
    exits 0; restarted with the same journal, it skips what was done and does the rest."""
    files = make_files(40)
    paths = b"".join(f"{p}\n".encode() for p in files)
    argv = (sys.executable, script("ingest_worker"), "--journal", str(tmp_path / "w.db"))
    pipe = asyncio.subprocess.PIPE
    async with start(*argv, env=example_env(emu), stdin=pipe) as first:
        await first.wait_for("^ready")
        assert first.proc.stdin is not None
        first.proc.stdin.write(paths[: paths.index(str(files[10]).encode())])  # stdin stays open
        await first.wait_for("^indexed ")
        code = await first.interrupt()
    async with start(*argv, env=example_env(emu), stdin=pipe) as second:
        await second.wait_for("^ready")
        assert second.proc.stdin is not None
        second.proc.stdin.write(paths)
        second.proc.stdin.close()
        assert await second.finish() == 0, second.output
    indexed_first = first.output.count("indexed ")
    assert code == 0
    assert "Traceback" not in first.output
    assert [line for line in first.output.splitlines() if line.startswith("summary:")]
    assert "ended early: stop() was called" in first.output
    assert 0 < indexed_first <= 10
    skipped = [line for line in second.output.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == indexed_first
    assert emu.stats.index_size(MODEL, "worker") == len(files)


async def test_ingest_worker_exits_cleanly_on_sigterm(
    emu: Emulator, make_files: MakeFiles, tmp_path: Path
) -> None:
    """SIGTERM once three paths are indexed: a summary and exit 0."""
    files = make_files(3)
    argv = (sys.executable, script("ingest_worker"), "--journal", str(tmp_path / "w.db"))
    async with start(*argv, env=example_env(emu), stdin=asyncio.subprocess.PIPE) as worker:
        await worker.wait_for("^ready")
        assert worker.proc.stdin is not None
        worker.proc.stdin.write(b"".join(f"{p}\n".encode() for p in files))
        for path in files:
            await worker.wait_for(f"^indexed {path}$")
        worker.proc.terminate()
        assert await worker.finish() == 0
    assert "ended early: stop() was called" in worker.output

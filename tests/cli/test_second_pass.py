"""The CLI's second pass of the first ten minutes (issue 24): output that can be copied,
flags in the user's words, a deadline the user sets, and an end that says what was done,
what was spent and the exact command to go on. Each point as a subprocess run."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import struct
import termios
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

from aiohttp import web

from gateway_async.cli.main import build_parser
from gateway_async.emulator import Emulator, Faults, FaultSpec

from .conftest import Cli, clean_env, run_cli, screen_lines, spawn_cli, terminal
from .test_ux import env_of, files_in, slow

IMAGE = ("--model", "demo-image-embed")


@contextlib.asynccontextmanager
async def tty(*args: str, env: dict[str, str], columns: int) -> AsyncIterator[list[bytes]]:
    """The CLI with stdout AND stderr on a pty of ``columns``: what a person sees."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {**env, "COLUMNS": str(columns), "TERM": "xterm-256color"}
    proc = await spawn_cli(*args, env=env, stdout=slave, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []
    try:
        while True:
            try:
                data = await asyncio.to_thread(os.read, master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not data:
                break
            chunks.append(data)
        await proc.wait()
        yield chunks
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        os.close(master)


def whole_ids(lines: list[str], prefix: str) -> list[str]:
    """Every token of the screen that starts like an ID."""
    return [token for line in lines for token in line.split() if token.startswith(prefix)]


async def test_ids_refs_and_slugs_are_never_broken(emu: Emulator, tmp_path: Path) -> None:
    """search at 80 columns, models list at 50: each ID, ref and slug is on one line, whole
    (copied as shown, it is right); rows fold rather than cut them."""
    images = files_in(tmp_path / "f", 3)
    env = env_of(emu)
    index = await run_cli("index", str(images), *IMAGE, "--scope", "s", env=env)
    assert index.code == 0, index.err
    query = str(images / "0000.bin")
    search_args = ("search", *IMAGE, "--scope", "s", "--file", query)
    async with tty(*search_args, env=env, columns=80) as chunks:
        searched = screen_lines(b"".join(chunks))
    async with tty("models", "list", env=env, columns=50) as chunks:
        listed = screen_lines(b"".join(chunks))
    items, refs = whole_ids(searched, "item_"), whole_ids(searched, "mref_")
    assert len(items) == len(refs) == 3, searched
    assert all(len(token) == len("item_") + 24 for token in items), searched
    assert all(len(token) == len("mref_") + 24 for token in refs), searched
    assert max(len(line) for line in searched) <= 80
    async with emu.client() as gw:
        slugs = {m.slug async for m in gw.marketplace.list_models()}
    shown = {token for line in listed for token in line.split()}
    assert slugs <= shown, listed


async def test_timeout_and_max_retries_bound_a_hung_gateway(emu: Emulator, cli: Cli) -> None:
    """A Gateway that never answers: --timeout 0.5 --max-retries 0 ends in about half a
    second with one line naming --timeout; every command that calls the Gateway has both."""
    emu.set_faults(Faults(seed=1, routes={"*": FaultSpec(latency=(30, 30))}))
    result = await asyncio.wait_for(cli("wallet", "--timeout", "0.5", "--max-retries", "0"), 20)
    assert result.code == 1
    assert len(result.err.splitlines()) == 1
    assert "timed out" in result.err
    assert "--timeout" in result.err
    assert "timeout=" not in result.err.replace("(--timeout 0.5", "")
    bad = await cli("wallet", "--timeout", "-1")
    assert bad.code == 2
    assert "--timeout" in bad.err
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, sub in commands.items():
        if name in ("emulator", "demo"):
            continue
        helps = [sub.format_help()]
        if name == "models":
            helps = [a.format_help() for a in sub._subparsers._group_actions[0].choices.values()]  # type: ignore[union-attr]
        for text in helps:
            assert "--timeout" in text, name
            assert "--max-retries" in text, name


async def test_messages_name_what_the_user_typed(emu: Emulator, cli: Cli, tmp_path: Path) -> None:
    """--file (not --source), --journal's missing folder (not 'j.db.lock'), and the
    command that lists models (not an API route)."""
    folder = files_in(tmp_path / "f", 1)
    missing, journal, unknown = await asyncio.gather(
        cli("search", *IMAGE, "--scope", "s", "--file", "nope.png"),
        cli("index", str(folder), *IMAGE, "--scope", "s", "--journal", "/no/dir/j.db"),
        cli("run", "no-such-model", "--input", "{}"),
    )
    assert missing.code == 2
    assert missing.err.strip() == "gateway-async: error: --file: no such file: nope.png"
    assert journal.code == 2
    assert journal.err.startswith("gateway-async: error: --journal: the folder '/no/dir'")
    assert ".lock" not in journal.err
    assert unknown.code == 1
    assert "`gateway-async models list`" in unknown.err
    assert "/api/marketplace" not in unknown.err
    assert emu.stats.uploads_initiated == 0


async def test_the_narrow_bar_keeps_the_failure_count(emu: Emulator, tmp_path: Path) -> None:
    """At 50 columns, with storage failing every PUT, the bar still says how many failed."""
    folder = files_in(tmp_path / "f", 4)
    emu.set_faults(Faults(seed=1, routes={"PUT /storage": FaultSpec(error_503=1.0)}))
    args = ("upload", str(folder), "--concurrency", "1", "--max-retries", "0")
    async with terminal(*args, env=env_of(emu), columns=50) as term:
        code, _ = await term.finish()
    assert code == 1
    bars = [line for line in term.lines if "4/4" in line]
    assert bars, term.lines
    assert "4 failed" in bars[-1]
    assert max(len(line) for line in term.lines if not line.startswith("failed:")) <= 50


async def test_a_402_mid_index_ends_with_the_summary_and_the_rerun_command(
    tmp_path: Path,
) -> None:
    """Credits for 3 runs, 6 files: what was indexed and spent, then 'top up, then rerun'
    with the very command (same --journal); the rerun after a top-up finishes the rest."""
    folder = files_in(tmp_path / "f", 6)
    journal = str(tmp_path / "j.db")
    async with Emulator(initial_balance=Decimal("0.003")) as emu:
        env = env_of(emu)
        args = ("index", str(folder), *IMAGE, "--scope", "s", "--journal", journal)
        first = await run_cli(*args, "--concurrency", "1", env=env)
        assert first.code == 1
        err = first.err.splitlines()
        assert any("402" in line for line in err), first.err
        assert "3 indexed, 0 already done" in first.out
        assert "0.0030 credits" in first.out
        rerun = [line for line in err if line.startswith("top up the wallet, then rerun: ")]
        assert rerun == [
            "top up the wallet, then rerun: gateway-async index "
            f"{folder} --model demo-image-embed --scope s --journal {journal} --concurrency 1"
        ]
        emu.set_balance(Decimal("1"))
        again = await run_cli(*args, "--concurrency", "1", env=env)
        assert again.code == 0, again.err
        assert "3 indexed, 3 already done" in again.out


async def test_the_spend_cap_ends_with_the_rerun_command(
    emu: Emulator, cli: Cli, tmp_path: Path
) -> None:
    folder = files_in(tmp_path / "f", 4)
    result = await cli("index", str(folder), *IMAGE, "--scope", "c", "--max-spend", "0.002")
    assert result.code == 1
    assert "stopped: the spend cap (--max-spend) was reached" in result.out
    hint = [line for line in result.err.splitlines() if "rerun" in line]
    assert hint == [
        "nothing was journaled: rerun with --journal FILE to make the next run resumable"
    ]


async def test_a_402_during_upload_prints_what_finished_and_the_rerun(tmp_path: Path) -> None:
    """A Gateway whose init answers 402: one line for the cause, the summary, and the
    rerun command (the key never shown)."""

    async def refuse(_: web.Request) -> web.Response:
        body = {"error": {"code": "insufficient_funds", "message": "top up"}}
        return web.json_response(body, status=402)

    app = web.Application()
    app.router.add_post("/api/media/upload/init", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        folder = files_in(tmp_path / "f", 3)
        env = clean_env(GATEWAY_BASE_URL=f"http://127.0.0.1:{port}")
        result = await run_cli("--api-key", "sekrit-key", "upload", str(folder), env=env)
    finally:
        await runner.cleanup()
    assert result.code == 1
    err = result.err.splitlines()
    assert err[0].startswith("gateway-async: error: 402 insufficient_funds: top up")
    assert "0 of 3 files uploaded" in result.err
    assert (
        f"top up the wallet, then rerun: gateway-async --api-key '<your key>' upload {folder}"
        in err
    )
    assert "sekrit-key" not in result.err + result.out


async def test_upload_journal_resumes_and_ctrl_c_prints_what_finished(
    emu: Emulator, cli: Cli, tmp_path: Path
) -> None:
    """Ctrl-C mid-upload: the media_refs of the files done are printed (not only a count),
    with the resume hint; the rerun with the same --journal uploads only the rest."""
    folder = files_in(tmp_path / "f", 30)
    journal = str(tmp_path / "u.db")
    args = ("upload", str(folder), "--journal", journal, "--concurrency", "1")
    slow(emu, "PUT /storage")
    pipe = asyncio.subprocess.PIPE
    proc = await spawn_cli(*args, "-v", env=env_of(emu), stdout=pipe, stderr=pipe)
    assert proc.stderr is not None
    completes = 0
    while completes < 3:  # the third file completed: the first's result is surely told
        line = await proc.stderr.readline()
        assert line, "the upload ended before it was interrupted"
        completes += b"POST /api/media/upload/complete -> 200" in line
    proc.send_signal(signal.SIGINT)
    out, rest = await proc.communicate()
    err = b"".join([line, rest])
    emu.set_faults(None)
    done_first = emu.stats.uploads_completed
    assert proc.returncode == 130
    refs = whole_ids(out.decode().splitlines(), "mref_")
    assert len(refs) >= 1
    assert "of 30 files uploaded" in err.decode()
    assert "rerun with the same --journal to resume" in err.decode()
    again = await cli(*args, "--json")
    assert again.code == 0, again.err
    lines = again.json_lines()
    assert len(lines) == 30
    reused = [line for line in lines if line.get("journaled")]
    assert {line["result"]["media_ref"] for line in reused} >= set(refs)
    assert emu.stats.uploads_completed - done_first == 30 - len(reused)


async def test_upload_job_sends_no_bytes_again(emu: Emulator, cli: Cli, tmp_path: Path) -> None:
    """--job names each upload by its content: the rerun gets the same media_refs and
    sends no byte the workspace already holds."""
    folder = files_in(tmp_path / "f", 3)
    first = await cli("upload", str(folder), "--job", "photos-1", "--json")
    puts = emu.stats.requests_by_route["PUT /storage"]
    again = await cli("upload", str(folder), "--job", "photos-1", "--json")
    assert (first.code, again.code) == (0, 0), first.err + again.err
    refs = [sorted(line["result"]["media_ref"] for line in r.json_lines()) for r in (first, again)]
    assert refs[0] == refs[1]
    assert emu.stats.requests_by_route["PUT /storage"] == puts

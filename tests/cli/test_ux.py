"""What a user meets in the first ten minutes of the CLI, each point as a subprocess run:
one-line failures in CLI words, progress on a terminal only, output that streams, Ctrl-C
and ``| head`` handled, and the spend cap honoured before any upload."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from gateway_async.cli.main import build_parser
from gateway_async.emulator import Emulator, Faults, FaultSpec

from .conftest import Cli, clean_env, run_cli, spawn_cli, terminal

IMAGE = ("--model", "demo-image-embed")


def files_in(folder: Path, n: int) -> Path:
    """``n`` small distinct files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{i:04d}.bin").write_bytes(f"file {i}".encode())
    return folder


def slow(emu: Emulator, route: str, seconds: float = 0.05) -> None:
    """Every request on ``route`` takes ``seconds``: output seen early is seen mid-run."""
    spec = FaultSpec(latency=(seconds, seconds))
    emu.set_faults(Faults(seed=1, routes={route: spec}))


def env_of(emu: Emulator) -> dict[str, str]:
    return clean_env(GATEWAY_API_KEY=emu.api_key, GATEWAY_BASE_URL=emu.base_url)


async def test_without_rich_the_cli_names_the_extra() -> None:
    """No rich: one line saying which extra to install."""
    code = "import sys; sys.modules['rich'] = None; from gateway_async.__main__ import main; "
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code + "sys.exit(main(['wallet']))",
        env=clean_env(),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert err.decode().splitlines() == [
        "gateway-async: error: the command line needs rich: pip install 'gateway-async[cli]'"
    ]


async def test_a_bad_or_empty_scope_fails_before_any_upload(
    emu: Emulator, cli: Cli, tmp_path: Path
) -> None:
    """index --scope 'bad scope' / '': exit 2, one line naming --scope, nothing uploaded."""
    folder = files_in(tmp_path / "f", 3)
    results = await asyncio.gather(
        cli("index", str(folder), *IMAGE, "--scope", "bad scope!"),
        cli("index", str(folder), *IMAGE, "--scope", ""),
    )
    for result in results:
        assert result.code == 2
        assert len(result.err.splitlines()) == 1
        assert result.err.startswith("gateway-async: error: --scope: ")
        assert "scope=" not in result.err
    assert emu.stats.uploads_initiated == 0


async def test_a_text_model_refuses_files(emu: Emulator, cli: Cli, tmp_path: Path) -> None:
    """index and search --file with a text model: exit 2 before uploading or charging."""
    folder = files_in(tmp_path / "f", 2)
    text = ("--model", "demo-text-embed", "--scope", "t")
    results = await asyncio.gather(
        cli("index", str(folder), *text), cli("search", *text, "--file", str(folder / "0000.bin"))
    )
    for result in results:
        assert result.code == 2, result.err
        assert "--model demo-text-embed takes 'text', not files" in result.err
        assert len(result.err.splitlines()) == 1
    assert (emu.stats.uploads_initiated, emu.stats.charges) == (0, 0)


async def test_a_401_during_a_large_upload_is_one_line(cli: Cli, tmp_path: Path) -> None:
    """2,000 files and a wrong key: one error line, not one per file."""
    folder = files_in(tmp_path / "many", 2000)
    result = await cli("--api-key", "wrong", "upload", str(folder))
    assert result.code == 1
    assert result.err.splitlines() == [result.err.strip()]
    assert result.err.startswith("gateway-async: error: 401 unauthorized")
    assert result.out == ""


async def test_upload_progress_moves_per_file_and_fits_50_columns(
    emu: Emulator, tmp_path: Path
) -> None:
    """On a 50-column terminal the bar counts files from the first one, shows an ETA,
    never wraps, and the table goes to stdout, not the terminal."""
    folder = files_in(tmp_path / "f", 20)
    slow(emu, "PUT /storage")
    args = ("upload", str(folder), "--concurrency", "1")
    async with terminal(*args, env=env_of(emu), columns=50) as term:
        early = await term.wait_for(r"\b1?\d/20\b.*\d:\d\d:\d\d")
        completed_then = emu.stats.uploads_completed
        code, out = await term.finish()
    assert code == 0
    assert completed_then < 20
    assert "upload" in early
    assert max(len(line) for line in term.lines) <= 50
    assert "20/20" in term.lines[-1]
    assert "media_ref" in out


async def test_no_progress_with_json_or_without_a_terminal(emu: Emulator, tmp_path: Path) -> None:
    """--json on a terminal, and a plain run with stderr piped: nothing on stderr."""
    folder = files_in(tmp_path / "f", 3)
    async with terminal("upload", str(folder), "--json", env=env_of(emu)) as term:
        code, out = await term.finish()
    piped = await run_cli("upload", str(folder), env=env_of(emu))
    assert (code, term.lines) == (0, [])
    assert len(out.splitlines()) == 3
    assert (piped.code, piped.err) == (0, "")


async def test_json_lines_stream_as_uploads_finish(emu: Emulator, tmp_path: Path) -> None:
    """The first JSON line arrives while most uploads are still to come."""
    folder = files_in(tmp_path / "f", 20)
    slow(emu, "PUT /storage")
    args = ("upload", str(folder), "--json", "--concurrency", "1")
    proc = await spawn_cli(*args, env=env_of(emu), stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    first = await proc.stdout.readline()
    completed_then = emu.stats.uploads_completed
    rest, _ = await proc.communicate()
    assert b'"media_ref"' in first
    assert completed_then < 20
    assert len(rest.splitlines()) == 19


async def test_ctrl_c_prints_a_summary_and_how_to_resume(
    emu: Emulator, cli: Cli, tmp_path: Path
) -> None:
    """SIGINT mid-index: exit 130, a newline, a short summary, the resume hint; the rerun
    with the same --journal skips what was done."""
    folder = files_in(tmp_path / "f", 30)
    journal = str(tmp_path / "j.db")
    args = ("index", str(folder), *IMAGE, "--scope", "s", "--journal", journal)
    slow(emu, "POST /api/runs")
    pipe = asyncio.subprocess.PIPE
    proc = await spawn_cli(
        *args, "--json", "--concurrency", "2", env=env_of(emu), stdout=pipe, stderr=pipe
    )
    assert proc.stdout is not None
    await proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    _, err = await proc.communicate()
    emu.set_faults(None)
    again = await cli(*args)
    lines = err.decode().split("\n")
    assert proc.returncode == 130
    assert lines[0] == ""
    assert lines[1] == "gateway-async: interrupted"
    assert "already done" in lines[2]
    assert "(of 30)" in lines[2]
    assert lines[-2] == "rerun with the same --journal to resume"
    assert "Traceback" not in err.decode()
    assert again.code == 0
    assert ", 0 already done" not in again.out
    assert emu.stats.index_size("demo-image-embed", "s") == 30


async def test_head_minus_1_exits_quietly(emu: Emulator, tmp_path: Path) -> None:
    """stdout closed after one line (``| head -1``): no 'Broken pipe', no traceback."""
    folder = files_in(tmp_path / "f", 20)
    slow(emu, "PUT /storage", 0.02)
    read_end, write_end = os.pipe()
    args = ("upload", str(folder), "--json", "--concurrency", "1")
    proc = await spawn_cli(*args, env=env_of(emu), stdout=write_end, stderr=asyncio.subprocess.PIPE)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        first = await asyncio.to_thread(reader.readline)
    _, err = await proc.communicate()
    assert b"media_ref" in first
    assert err == b""
    assert proc.returncode == 141


async def test_max_spend_counts_every_file_and_uploads_only_what_it_can_run(
    emu: Emulator, cli: Cli, tmp_path: Path
) -> None:
    """12 files, credits for 5: '7 not run (of 12)' and exactly 5 uploads."""
    folder = files_in(tmp_path / "f", 12)
    result = await cli("index", str(folder), *IMAGE, "--scope", "c", "--max-spend", "0.005")
    assert result.code == 1
    assert "5 indexed, 0 already done, 0 failed, 7 not run (of 12)" in result.out
    assert "stopped: the spend cap (--max-spend) was reached" in result.out
    assert emu.stats.uploads_initiated == 5
    assert emu.stats.index_size("demo-image-embed", "c") == 5


async def test_messages_use_flag_names(cli: Cli, tmp_path: Path) -> None:
    """Plain http to a remote host names --allow-insecure-http (which exists); a bad
    --concurrency and a non-object --input are usage errors."""
    remote, concurrency, text_input = await asyncio.gather(
        cli("--base-url", "http://gateway.example", "wallet"),
        cli("upload", str(tmp_path), "--concurrency", "0"),
        cli("run", "demo-echo", "--input", '"hello"'),
    )
    assert remote.code == 2
    assert "--allow-insecure-http" in remote.err
    assert "allow_insecure_http" not in remote.err
    assert concurrency.code == 2
    assert "--concurrency: must be a positive integer" in concurrency.err
    assert text_input.code == 2
    assert "--input: expected a JSON object" in text_input.err
    assert "--allow-insecure-http" in build_parser().format_help()


async def test_allow_insecure_http_lets_plain_http_through(emu: Emulator, cli: Cli) -> None:
    """The flag reaches the client: http://0.0.0.0 is not loopback by name, so it is refused
    without the flag, and with it the request goes through (Linux routes it to loopback)."""
    url = emu.base_url.replace("127.0.0.1", "0.0.0.0")
    refused, allowed = await asyncio.gather(
        cli("--base-url", url, "wallet"),
        cli("--base-url", url, "--allow-insecure-http", "wallet"),
    )
    assert refused.code == 2
    assert "pass --allow-insecure-http" in refused.err
    assert (allowed.code, allowed.err) == (0, "")
    assert allowed.out.startswith("100.0000 credits")


async def test_readable_failures(emu: Emulator, cli: Cli, tmp_path: Path) -> None:
    """A failed run as 'code: message'; a long vector compact; an empty search said so;
    an empty folder is 'no files found' (exit 1); a dangling symlink is reported."""
    (tmp_path / "empty").mkdir()
    files_in(tmp_path / "links", 1)
    (tmp_path / "links" / "gone").symlink_to(tmp_path / "nowhere")
    failed, vector, nothing, empty, linked = await asyncio.gather(
        cli("run", "demo-echo", "--input", "{}", "--params", '{"fail": "boom"}'),
        cli("run", "demo-text-embed", "--input", '{"text": "hi"}'),
        cli("search", "--model", "demo-text-embed", "--scope", "empty", "--text", "x"),
        cli("upload", str(tmp_path / "empty")),
        cli("upload", str(tmp_path / "links")),
    )
    assert failed.err.splitlines() == ["run failed: model_error: boom"]
    assert vector.code == 0
    assert len(vector.out.splitlines()) < 10
    output = json.loads(vector.out.split("\n", 1)[1])  # a JSON list, not a quoted string
    assert isinstance(output["embedding"], list)
    assert all(isinstance(x, float | int) for x in output["embedding"])
    assert nothing.out.strip() == "no matches in scope 'empty' of demo-text-embed"
    assert empty.code == 1
    assert "no files found" in empty.err
    assert linked.code == 0
    assert f"skipped dangling symlink: {tmp_path / 'links' / 'gone'}" in linked.err


async def test_storage_errors_are_one_line(emu: Emulator, cli: Cli, tmp_path: Path) -> None:
    """Storage answers 503 with an XML body (several lines): the failure is one line."""
    folder = files_in(tmp_path / "f", 1)
    emu.set_faults(Faults(seed=1, routes={"PUT /storage": FaultSpec(error_503=1.0)}))
    result = await cli("upload", str(folder))
    assert result.code == 1
    failures = [line for line in result.err.splitlines() if line.startswith("failed:")]
    assert len(failures) == 1
    assert failures[0].endswith(
        "storage answered HTTP 503 to the PUT: SlowDown: Please reduce your request rate."
    )
    assert "<" not in failures[0]


async def test_demo_json_and_its_help(tmp_path: Path) -> None:
    """demo --json prints JSON lines; demo --help offers no connection flags."""
    result, helped = await asyncio.gather(
        run_cli("demo", "--json", "--media", str(tmp_path), env=clean_env()),
        run_cli("demo", "--help", env=clean_env()),
    )
    lines = result.json_lines()
    assert result.code == 0, result.err
    assert lines[48]["summary"]["succeeded"] == 48
    assert lines[49]["matches"][0]["metadata"] == {"file": "blue-checker.png"}
    assert lines[50]["wallet"]["balance"] == "99.9510"
    assert "--api-key" not in helped.out
    assert "--base-url" not in helped.out
    assert "--json" in helped.out


def test_every_option_has_help_text() -> None:
    """Every flag and argument of every command says what it is for."""
    parser = build_parser()
    missing = []
    for name, command in _commands(parser):
        for action in command._actions:
            if action.help is None and action.dest not in ("help", "command", "models_command"):
                missing.append(f"{name} {action.option_strings or action.dest}")
    assert missing == []


def _commands(parser: object) -> list[tuple[str, object]]:
    """(name, parser) of the parser and every sub-command, recursively."""
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    found: list[tuple[str, object]] = [(parser.prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_commands(sub))
    return found

"""Breaks an adversarial review found in the CLI, each pinned by the test that found it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway_async._startup import started_as_cli
from gateway_async.cli.commands import collect_files
from gateway_async.cli.main import main
from gateway_async.emulator import Emulator

from .conftest import Cli, clean_env


def _media(folder: Path, n: int) -> None:
    for i in range(n):
        (folder / f"{i}.png").write_bytes(f"image {i}".encode() * 20)


async def test_a_journal_inside_the_folder_is_never_indexed(
    emu: Emulator, cli: Cli, tmp_path: Path
) -> None:
    """``index DIR --journal DIR/j.db``: the rerun of unchanged files spends nothing; the
    journal changed by the first run is not taken as new media."""
    _media(tmp_path, 3)
    args = ("index", str(tmp_path), "--model", "demo-image-embed", "--scope", "s")
    first = await cli(*args, "--journal", str(tmp_path / "j.db"))
    spent, uploads = emu.stats.charged_total, emu.stats.uploads_initiated
    again = await cli(*args, "--journal", str(tmp_path / "j.db"))
    assert (first.code, again.code) == (0, 0), again.err
    assert "0 indexed, 3 already done, 0 failed (of 3)" in again.out
    assert (emu.stats.charged_total, emu.stats.uploads_initiated) == (spent, uploads)
    assert emu.stats.index_size("demo-image-embed", "s") == 3


async def test_upload_never_takes_its_journal(emu: Emulator, cli: Cli, tmp_path: Path) -> None:
    """``upload DIR --journal DIR/j.db``: a rerun uploads nothing, the journal included."""
    _media(tmp_path, 2)
    first = await cli("upload", str(tmp_path), "--journal", str(tmp_path / "j.db"), "--json")
    uploads = emu.stats.uploads_initiated
    again = await cli("upload", str(tmp_path), "--journal", str(tmp_path / "j.db"), "--json")
    assert (first.code, again.code) == (0, 0), again.err
    # in the order they finish: the journal itself is not among them
    assert sorted(Path(line["source"]).name for line in again.json_lines()) == ["0.png", "1.png"]
    assert emu.stats.uploads_initiated == uploads == 2


def test_collect_files_leaves_out_the_journal_and_every_side_file(tmp_path: Path) -> None:
    """The journal, SQLite's -wal, -shm and -journal files and an old version's .lock,
    however the journal is named (through a symlinked folder), are never sources."""
    _media(tmp_path, 1)
    side = ("j.db", "j.db.lock", "j.db-wal", "j.db-shm", "j.db-journal", "j.dbx")
    for name in side:
        (tmp_path / name).write_bytes(b"journal")
    (tmp_path.parent / f"{tmp_path.name}-link").symlink_to(tmp_path)
    via_link = str(tmp_path.parent / f"{tmp_path.name}-link" / "j.db")
    for journal in (str(tmp_path / "j.db"), via_link):
        files, _ = collect_files([str(tmp_path)], "*", journal)
        assert sorted(path.name for path in files) == ["0.png", "j.dbx"]
    explicit, _ = collect_files([str(tmp_path / "j.db"), str(tmp_path / "0.png")], "*", via_link)
    assert [path.name for path in explicit] == ["0.png"]
    assert len(collect_files([str(tmp_path)])[0]) == len(side) + 1  # no journal: all of them


# -- every user error is one line, exit 2 ---------------------------------------------------

ONE_LINE_ERRORS = [
    (["--concurrency", "0"], "--concurrency: must be a positive integer: '0'"),
    (["--max-spend", "abc"], "--max-spend: not a decimal number: 'abc'"),
    (["--max-spend", "1e999999"], "--max-spend: too large a number of credits: 1e999999"),
    (["--timeout", "-1"], "--timeout: must be a positive number of seconds: '-1'"),
    (["--nope"], "unrecognized arguments: --nope"),
    (["--scope", "my photos"], "--scope: 'my photos' is not a valid scope"),
]


@pytest.mark.parametrize(("extra", "says"), ONE_LINE_ERRORS)
def test_every_usage_error_is_one_line_naming_the_flag(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    extra: list[str],
    says: str,
) -> None:
    """argparse's own errors printed the whole usage block first; a huge --max-spend was a
    decimal.Overflow traceback. Now each is the CLI's one line, exit 2, before any request
    (the Gateway URL is a closed port)."""
    monkeypatch.setenv("GATEWAY_API_KEY", "k")
    monkeypatch.setenv("GATEWAY_BASE_URL", "http://127.0.0.1:9")
    _media(tmp_path, 1)
    code = main(["index", str(tmp_path), "--model", "demo-image-embed", "--scope", "s", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"gateway-async: error: {says}")


def test_a_missing_flag_names_the_command_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", "x", "--model", "demo-image-embed"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "gateway-async: error: the following arguments are required: --scope "
        "(see: gateway-async index --help)"
    ]


# -- Ctrl-C while the CLI starts ------------------------------------------------------------

# Started by the child's ``site`` (PYTHONPATH): SIGINT to itself when ``INTERRUPT_AT`` is first
# imported, so the signal lands in exactly that phase of the start-up, with no timing at all.
SITECUSTOMIZE = """
import os, signal, sys

class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == os.environ["INTERRUPT_AT"]:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, Interrupt())
"""

STARTS = [
    ("-m", "aiohttp"),  # while `import gateway_async` runs, before any CLI code
    ("script", "aiohttp"),  # the same, through the console script
    ("-m", "rich"),  # in __main__, while the CLI imports
]


@pytest.mark.parametrize(("how", "module"), STARTS)
async def test_ctrl_c_while_the_cli_starts_exits_130_quietly(
    tmp_path: Path, how: str, module: str
) -> None:
    """It printed a KeyboardInterrupt traceback and died of the signal (-2)."""
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = clean_env(
        GATEWAY_API_KEY="k",
        GATEWAY_BASE_URL="http://127.0.0.1:9",
        PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]),
        INTERRUPT_AT=module,
    )
    script = os.path.join(os.path.dirname(sys.executable), "gateway-async")
    command = [sys.executable, "-m", "gateway_async"] if how == "-m" else [script]
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(*command, "wallet", env=env, stderr=pipe)
    _, err = await proc.communicate()
    assert (proc.returncode, err.decode()) == (130, "\ngateway-async: interrupted\n")


def test_only_the_cli_process_takes_ctrl_c_over() -> None:
    """A program that imports the SDK keeps Python's KeyboardInterrupt."""
    code = "import signal, gateway_async; print(signal.getsignal(signal.SIGINT).__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "default_int_handler"
    assert started_as_cli(["-m"], [sys.executable, "-X", "utf8", "-m", "gateway_async"])
    assert started_as_cli(
        ["/venv/bin/gateway-async", "wallet"], ["python", "/venv/bin/gateway-async"]
    )
    assert not started_as_cli(["-m"], [sys.executable, "-m", "gateway_async.emulator"])
    assert not started_as_cli(["-m"], [sys.executable, "-m", "pytest"])
    assert not started_as_cli(["app.py", "-m", "gateway_async"], ["python", "app.py", "-m"])
    spawned = ["python", "-c", "from multiprocessing.spawn import spawn_main; spawn_main()"]
    assert not started_as_cli(["/venv/bin/gateway-async", "index"], spawned)


def test_only_the_listing_route_becomes_the_listing_command() -> None:
    """A failed call to one model's route names that route, not `models list` glued to a slug."""
    from gateway_async.cli._common import one_line

    listing = one_line("see GET /api/marketplace/models for the slugs")
    assert listing == "see `gateway-async models list` for the slugs"
    one = one_line("GET /api/marketplace/models/demo-image-embed failed: reset")
    assert one == "GET /api/marketplace/models/demo-image-embed failed: reset"
    assert "models list" not in one_line("GET /api/marketplace/models?q=x failed")

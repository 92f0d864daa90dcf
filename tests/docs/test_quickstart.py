"""``make demo`` installs only what the demo needs; ``make test`` keeps the full install."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _dry_run(target: str) -> str:
    """What ``make TARGET`` would run from scratch (``-B``: as if nothing were built)."""
    if shutil.which("make") is None:
        pytest.fail("make is not installed: the quickstart needs it")
    done = subprocess.run(
        ["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout


def test_make_demo_installs_the_core_and_cli_only() -> None:
    commands = _dry_run("demo")
    assert "[dev]" not in commands, commands
    assert ".venv-demo/bin/python -m gateway_async demo" in commands, commands
    assert "-r .venv-demo/requirements.txt" in commands, commands
    deps_line = next(line for line in commands.splitlines() if "tomllib" in line)
    script = deps_line.split("-c '", 1)[1].rsplit("'", 1)[0]
    deps = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    names = {dep.split(">")[0].split("=")[0].split("<")[0] for dep in deps}
    assert names == {"aiohttp", "attrs", "cattrs", "aiofiles", "yarl", "rich"}


def test_make_test_keeps_the_full_development_install() -> None:
    assert "-e '.[dev]'" in _dry_run("test")

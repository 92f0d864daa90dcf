"""The OpenAPI document matches the routes; the CLI starts, prints its URLs, serves and
stops; remote binding needs a flag; the emulator stays independent of the SDK."""

from __future__ import annotations

import ast
import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway_async.emulator import DEFAULT_API_KEY, Emulator
from gateway_async.emulator._app import build_api_app
from gateway_async.emulator.cli import is_loopback, main

from .conftest import Api

PACKAGE = Path(__file__).parents[2] / "gateway_async" / "emulator"


async def test_openapi_matches_the_routes(api: Api, emu: Emulator) -> None:
    document = (await api.get("/api/openapi.json")).body
    assert document["openapi"].startswith("3.1")
    documented = {
        (method.upper(), path) for path, ops in document["paths"].items() for method in ops
    }
    app = build_api_app(emu.core)
    registered = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
    assert documented == registered
    for ops in document["paths"].values():
        for op in ops.values():
            for response in op["responses"].values():
                assert "X-Request-Id" in response["headers"]
                for media in response.get("content", {}).values():
                    ref = media["schema"].get("$ref", "#/components/schemas/Error")
                    assert ref.rsplit("/", 1)[1] in document["components"]["schemas"]


async def _start_cli(*args: str) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway_async.emulator",
        "--port",
        "0",
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    printed: dict[str, str] = {}
    while "API key" not in printed:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line, "the emulator exited before printing its URLs"
        name, sep, value = line.partition(": ")
        if sep:
            printed[name] = value.strip()
    return process, printed


async def test_cli_serves_until_sigterm(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    process, printed = await _start_cli(
        "--data-dir", str(tmp_path), "--balance", "7", "--api-key", "cli-key", "--faults", "seed=1"
    )
    try:
        assert printed["base URL"].startswith("http://127.0.0.1:")
        assert printed["storage URL"] != printed["base URL"]
        assert printed["API key"] == "cli-key"
        headers = {"X-API-Key": "cli-key"}
        async with session.get(printed["base URL"] + "/api/billing/wallet", headers=headers) as r:
            assert (await r.json())["balance"] == "7.0000"
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    assert b"stopped" in out
    assert (tmp_path / "state.sqlite3").exists()


def test_non_loopback_host_is_refused_without_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--host", "0.0.0.0", "--port", "0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("example.com", False),
        ("10.0.0.1", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_bad_cli_values_exit_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["--faults", "503=9"])
    assert info.value.code == 2


def test_the_emulator_imports_nothing_from_the_sdk() -> None:
    for source in PACKAGE.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            module = node.module if isinstance(node, ast.ImportFrom) and node.level == 0 else None
            if module and module.startswith("gateway_async"):
                assert (source.name, module) == ("_emulator.py", "gateway_async")


def test_importing_the_sdk_does_not_load_the_emulator() -> None:
    code = "import sys, gateway_async; print('gateway_async.emulator' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


async def test_client_is_an_sdk_gateway(emu: Emulator) -> None:
    async with emu.client() as gw:
        wallet = await gw.billing.wallet()
        assert str(wallet.balance) == "100.0000"
    assert emu.api_key == DEFAULT_API_KEY

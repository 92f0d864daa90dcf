"""The pytest plugin as a new user meets it: a fresh project whose only configuration is
the README's conftest line (no pytest-asyncio settings), running the README's tests."""

from __future__ import annotations

import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from gateway_async import Gateway, testing
from gateway_async.emulator import Emulator

README = Path(__file__).parents[2] / "README.md"

EXTRA_TESTS = """
from decimal import Decimal


async def test_gateway_retries_fast(gateway):
    assert gateway.retry.max_delay <= 0.01


async def test_the_factory_sets_the_balance(gateway_emulator_factory):
    emu = await gateway_emulator_factory(balance=Decimal("0.5"))
    async with emu.client() as gw:
        assert (await gw.billing.wallet()).balance == Decimal("0.5")
"""


def readme_blocks() -> list[str]:
    """The README's Python blocks of the plugin section, in order."""
    section = README.read_text().split("## The local emulator and the pytest plugin")[1]
    return re.findall(r"```python\n(.*?)```", section.split("\n## ")[0], re.S)


def run_fresh_project(
    tmp_path: Path, conftest: str, tests: str
) -> subprocess.CompletedProcess[str]:
    """pytest in a new folder: an empty ``[pytest]`` section pins the rootdir there."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "test_app.py").write_text(tests)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_readme_tests_run_unchanged_in_a_fresh_project(tmp_path: Path) -> None:
    """Strict mode (pytest-asyncio's default) runs the README's async tests as they are."""
    first, factory = readme_blocks()
    conftest, user_test = first.split("# test_app.py")
    result = run_fresh_project(tmp_path, conftest, f"#{user_test}\n\n{factory}\n{EXTRA_TESTS}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
    assert "asyncio_mode" not in (tmp_path / "pytest.ini").read_text()


async def test_the_gateway_fixture_backs_off_in_milliseconds(gateway: Gateway) -> None:
    """The fixture's client waits at most 10 ms between attempts, not 0.5-8 s."""
    assert gateway.retry is testing.FAST_RETRY
    assert max(testing.FAST_RETRY.backoff(n) for n in range(10)) <= 0.01


async def test_media_path_takes_a_media_ref(gateway: Gateway, gateway_emulator: Emulator) -> None:
    """The emulator accepts the MediaRef the SDK returns as well as its string."""
    ref = await gateway.media.upload(b"bytes", filename="a.bin")
    assert gateway_emulator.media_path(ref) == gateway_emulator.media_path(ref.media_ref)
    assert gateway_emulator.media_path(ref).read_bytes() == b"bytes"


async def test_the_factory_starts_emulators_with_a_balance(
    gateway_emulator_factory: testing.EmulatorFactory,
) -> None:
    """balance= sets the wallet; each emulator serves on its own port."""
    poor = await gateway_emulator_factory(balance=Decimal("0.0010"))
    other = await gateway_emulator_factory()
    async with poor.client() as gw:
        assert (await gw.billing.wallet()).balance == Decimal("0.0010")
    assert poor.base_url != other.base_url

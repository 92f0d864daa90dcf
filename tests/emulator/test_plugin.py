"""The ``gateway_async.testing`` pytest plugin, exercised as a user would: in a separate
pytest run that opts in with ``pytest_plugins``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

USER_TESTS = """
from gateway_async.emulator import Emulator


async def test_fixtures(gateway_emulator: Emulator, gateway) -> None:
    run = await gateway.runs.create(model="demo-echo", input={"text": "hi"})
    assert run.output == {"text": "hi"}
    assert gateway_emulator.stats.executions == 1
"""


def test_plugin_fixtures_work_in_a_users_suite(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["gateway_async.testing"]\n')
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout

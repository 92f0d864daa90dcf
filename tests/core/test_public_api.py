"""The public face: what ``import gateway_async`` exports, and what it must not load."""

from __future__ import annotations

import subprocess
import sys

import gateway_async


def test_all_is_sorted_and_every_name_exists() -> None:
    """__all__ is sorted (constants first, as ruff sorts) and each name resolves."""
    names = list(gateway_async.__all__)
    assert sorted(names, key=lambda n: (not n.isupper(), n)) == names
    for name in names:
        assert hasattr(gateway_async, name), name


def test_fixed_names_are_public() -> None:
    """The names the issue fixes are importable from the package root."""
    from gateway_async import Gateway, GatewayError, RunRequest  # noqa: F401


def test_import_loads_no_cli_emulator_or_test_modules() -> None:
    """A bare import stays light: no CLI, emulator, testing or test-framework modules."""
    code = (
        "import sys, gateway_async; "
        "print(','.join(m for m in sys.modules if m.startswith(('gateway_async.cli', "
        "'gateway_async.emulator', 'gateway_async.testing', 'pytest', 'aioresponses', 'rich'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_version_is_a_string() -> None:
    """__version__ is exposed for bug reports and the User-Agent."""
    assert isinstance(gateway_async.__version__, str)
    assert gateway_async.__version__.count(".") == 2

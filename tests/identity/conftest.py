"""Fixtures of the identity tests (issue #20): an in-process emulator and its client."""

from __future__ import annotations

from typing import Any

import pytest

from gateway_async import testing
from gateway_async.emulator import Emulator

gateway = testing.gateway  # the shared fixtures, under their own names
gateway_emulator = testing.gateway_emulator


@pytest.fixture
def emu(gateway_emulator: Emulator) -> Emulator:
    return gateway_emulator


class _Forgetful(dict[Any, Any]):
    """A held-content index that never holds anything: a version-1/2 server."""

    def setdefault(self, key: Any, default: Any = None) -> Any:
        return default


def without_held_content(emu: Emulator) -> None:
    """Make ``emu`` answer every init with a ticket, as servers before version 3 do."""
    emu.core.state.held = _Forgetful()

"""A pytest plugin for testing code that uses gateway_async, against a local emulator.

Opt in from a ``conftest.py``::

    pytest_plugins = ["gateway_async.testing"]

Fixtures (function-scoped, async, need pytest-asyncio):

* ``gateway_emulator``: a started :class:`gateway_async.emulator.Emulator` with defaults;
* ``gateway``: a ``Gateway`` client bound to it, closed after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest_asyncio

from gateway_async.emulator import Emulator

if TYPE_CHECKING:
    from gateway_async import Gateway


@pytest_asyncio.fixture
async def gateway_emulator() -> AsyncIterator[Emulator]:
    """A running emulator on ephemeral loopback ports, stopped after the test."""
    async with Emulator() as emulator:
        yield emulator


@pytest_asyncio.fixture
async def gateway(gateway_emulator: Emulator) -> AsyncIterator[Gateway]:
    """A client for ``gateway_emulator``, closed after the test."""
    async with gateway_emulator.client() as client:
        yield client

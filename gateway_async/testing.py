"""A pytest plugin for testing code that uses gateway_async, against a local emulator.

Opt in from a ``conftest.py`` (``pip install 'gateway-async[testing]'`` brings pytest and
pytest-asyncio; no pytest-asyncio settings are needed)::

    pytest_plugins = ["gateway_async.testing"]

Fixtures (function-scoped):

* ``gateway_emulator``: a started :class:`gateway_async.emulator.Emulator` with defaults;
* ``gateway``: a ``Gateway`` bound to it with :data:`FAST_RETRY` (millisecond backoff, so
  tests of faults take milliseconds), closed after the test;
* ``gateway_emulator_factory``: ``await gateway_emulator_factory(faults=..., balance=...)``
  starts another emulator (closed after the test); ``emu.client(retry=FAST_RETRY)`` is a
  client of it.

``async def`` tests that use these fixtures run on pytest-asyncio whatever its mode: the
plugin marks them ``@pytest.mark.asyncio`` when they are collected (strict mode, the
default, would otherwise refuse them). Other async tests keep pytest-asyncio's rules.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeAlias

import pytest
import pytest_asyncio

from gateway_async import RetryPolicy
from gateway_async.emulator import Emulator, Faults

if TYPE_CHECKING:
    from gateway_async import Gateway

__all__ = [
    "FAST_RETRY",
    "EmulatorFactory",
    "gateway",
    "gateway_emulator",
    "gateway_emulator_factory",
]

FAST_RETRY = RetryPolicy(base_delay=0.001, max_delay=0.01)
"""The default number of retries, with 1-10 ms of backoff instead of 0.5-8 s."""

EmulatorFactory: TypeAlias = Callable[..., Awaitable[Emulator]]
FIXTURES = frozenset({"gateway", "gateway_emulator", "gateway_emulator_factory"})


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Spare a fresh project pytest-asyncio's "loop scope is unset" deprecation warning.

    It asks the project to choose a default loop scope for its async fixtures; ours are
    function-scoped on a function-scoped loop either way, and a project that sets the
    option never sees the warning anyway. (Runs before pytest-asyncio's own hook.)
    """
    warnings.filterwarnings(
        "ignore",
        message='The configuration option "asyncio_default_fixture_loop_scope" is unset',
        category=pytest.PytestDeprecationWarning,
    )


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> Generator[None, Any, Any]:
    """Mark coroutine tests that use our fixtures as asyncio tests.

    ``trylast`` makes this wrapper the innermost, so the mark is in place before
    pytest-asyncio's own wrapper decides (in strict mode, by the mark alone) which
    collected functions it runs.
    """
    result = yield
    items = result if isinstance(result, list) else [result]
    for item in items:
        if (
            isinstance(item, pytest.Function)
            and inspect.iscoroutinefunction(item.obj)
            and FIXTURES & set(item.fixturenames)
            and item.get_closest_marker("asyncio") is None
        ):
            item.add_marker(pytest.mark.asyncio)
    return result


@pytest_asyncio.fixture
async def gateway_emulator_factory() -> AsyncIterator[EmulatorFactory]:
    """``await factory(faults=Faults(...), balance=Decimal("0.5"), **Emulator_kwargs)``."""
    started: list[Emulator] = []

    async def start(
        *, faults: Faults | None = None, balance: Decimal | None = None, **kwargs: Any
    ) -> Emulator:
        if balance is not None:
            kwargs["initial_balance"] = balance
        emulator = Emulator(faults=faults, **kwargs)
        await emulator.start()
        started.append(emulator)
        return emulator

    try:
        yield start
    finally:
        for emulator in reversed(started):
            await emulator.close()


@pytest_asyncio.fixture
async def gateway_emulator() -> AsyncIterator[Emulator]:
    """A running emulator on ephemeral loopback ports, stopped after the test.

    Not built on ``gateway_emulator_factory`` so that a conftest may re-export this fixture
    (``gateway_emulator = testing.gateway_emulator``) on its own.
    """
    async with Emulator() as emulator:
        yield emulator


@pytest_asyncio.fixture
async def gateway(gateway_emulator: Emulator) -> AsyncIterator[Gateway]:
    """A client for ``gateway_emulator`` with millisecond retries, closed after the test."""
    async with gateway_emulator.client(retry=FAST_RETRY) as client:
        yield client

"""The plugin's own fixtures, re-exported for the tests of the plugin."""

from __future__ import annotations

from gateway_async import testing

gateway = testing.gateway
gateway_emulator = testing.gateway_emulator
gateway_emulator_factory = testing.gateway_emulator_factory

"""A local emulator of the Gateway REST API: the whole contract on loopback.

    async with Emulator() as emu:
        async with emu.client() as gw:
            run = await gw.runs.create(model="demo-echo", input={"text": "hi"})

It serves ``/api/*`` with demo models (``demo-echo``, ``demo-text-embed``,
``demo-image-embed``), real deterministic vector search, a wallet, usage, idempotency,
rate limits and seeded fault injection, and a separate storage listener for pre-signed
media uploads. It is written from the wire contract alone and imports nothing from the
SDK (except lazily in :meth:`Emulator.client`). See ``docs/emulator.md``.
"""

from ._emulator import DEFAULT_API_KEY, Emulator
from ._faults import Faults, FaultSpec
from ._ratelimit import RateLimit
from ._stats import EmulatorStats

__all__ = ["DEFAULT_API_KEY", "Emulator", "EmulatorStats", "FaultSpec", "Faults", "RateLimit"]

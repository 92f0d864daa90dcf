"""The emulator in its own process for the Ray tests, with its counters on request.

``python -m tests.ray._emulator_child`` prints one JSON line (``base_url``, ``api_key``),
then answers each ``stats`` line on stdin with one JSON line of ``EmulatorStats``; it
stops at end of input. Ray workers reach it over loopback like any Gateway.
"""

from __future__ import annotations

import asyncio
import json
import sys
from decimal import Decimal

from gateway_async.emulator import Emulator


def _stats(emulator: Emulator) -> str:
    stats = emulator.stats
    return json.dumps(
        {
            "executions": stats.executions,
            "by_key": dict(stats.executions_by_idempotency_key),
            "replays": stats.replays,
            "uploads_initiated": stats.uploads_initiated,
            "uploads_completed": stats.uploads_completed,
            "credential_leaks": stats.credential_leaks,
        }
    )


async def main() -> None:
    loop = asyncio.get_running_loop()
    async with Emulator(initial_balance=Decimal("1000000")) as emulator:
        print(json.dumps({"base_url": emulator.base_url, "api_key": emulator.api_key}), flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if line.strip() == "stats":
                print(_stats(emulator), flush=True)


if __name__ == "__main__":
    asyncio.run(main())

"""The emulator in its own process for the Ray tests, with its counters on request.

``python -m tests.ray._emulator_child [JSON]`` (optional settings: ``balance``, and a rate
limit of ``rate`` per second and ``burst``) prints one JSON line (``base_url``, ``api_key``),
then answers each ``stats`` line on stdin with one JSON line of ``EmulatorStats``; it
stops at end of input. Ray workers reach it over loopback like any Gateway.
"""

from __future__ import annotations

import asyncio
import json
import sys
from decimal import Decimal

from gateway_async.emulator import Emulator, RateLimit


def _stats(emulator: Emulator) -> str:
    stats = emulator.stats
    return json.dumps(
        {
            "executions": stats.executions,
            "by_key": dict(stats.executions_by_idempotency_key),
            "replays": stats.replays,
            "uploads_initiated": stats.uploads_initiated,
            "uploads_completed": stats.uploads_completed,
            "puts": stats.puts,
            "credential_leaks": stats.credential_leaks,
            "charged": str(stats.charged_total),
            "rate_limited": stats.rate_limited,
        }
    )


async def main() -> None:
    loop = asyncio.get_running_loop()
    settings = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    limit = RateLimit(settings["rate"], settings["burst"]) if "rate" in settings else None
    balance = Decimal(settings.get("balance", "1000000"))
    async with Emulator(initial_balance=balance, rate_limit=limit) as emulator:
        print(json.dumps({"base_url": emulator.base_url, "api_key": emulator.api_key}), flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if line.strip() == "stats":
                print(_stats(emulator), flush=True)


if __name__ == "__main__":
    asyncio.run(main())

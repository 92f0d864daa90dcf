"""GatewayRunner subclasses that die mid-batch, after the Gateway answered, once per job.

Workers import this module (``PYTHONPATH`` from the tests' ``runtime_env``). "Once" is a
marker file created with ``O_EXCL``, so it holds across the restarts it causes.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pyarrow as pa
import ray

from gateway_async.ray import GatewayRunner


def first_time(marker: str) -> bool:
    """True for exactly one caller per marker, in any process."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


class ExitAfterAnswers(GatewayRunner):
    """Calls ``os._exit`` once, after the Gateway answered a whole batch."""

    def __init__(self, *, marker: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._marker = marker

    async def __call__(self, batch: pa.Table) -> pa.Table:
        result = await super().__call__(batch)
        if first_time(self._marker):
            os._exit(1)
        return result


class WaitForKill(GatewayRunner):
    """Once, after the Gateway answered a batch (on ``node_id`` if given), tells the test
    its pid and node over loopback, then waits for the test to kill it."""

    def __init__(self, *, marker: str, port: int, node_id: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self._marker, self._port, self._node_id = marker, port, node_id

    async def __call__(self, batch: pa.Table) -> pa.Table:
        result = await super().__call__(batch)
        here = ray.get_runtime_context().get_node_id()
        if self._node_id in (None, here) and first_time(self._marker):
            reader, writer = await asyncio.open_connection("127.0.0.1", self._port)
            writer.write(f"{os.getpid()}\n".encode())
            await writer.drain()
            await reader.read()  # EOF only if the test let us live
            writer.close()
            await writer.wait_closed()
        return result

"""An emulator in a child process that SIGKILLs itself at one point of a multipart complete.

Run as ``python -m tests.multipart._kill_child DATA_DIR POINT``; it prints
``<base_url> <storage_url>`` once serving. Points (both exist in every version of the
emulator, so the test also judges the old code):

* ``media-write``: the first write of a ``media`` record (the completion's commit);
* ``parts-dropped``: right after the first removal of an upload's part files.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

from gateway_async.emulator import Emulator
from gateway_async.emulator._db import Db
from gateway_async.emulator._multipart_state import MultipartStore

PART = 5 * 1024**2


def die(*_: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    if point == "media-write":
        real = Db.put

        def put(self: Db, table: str, key: str, value: Mapping[str, Any]) -> None:
            if table == "media":
                die()
            real(self, table, key, value)

        Db.put = put  # type: ignore[method-assign]
    elif point == "parts-dropped":
        drop = MultipartStore.drop_parts

        def drop_then_die(self: MultipartStore, upload_id: str) -> None:
            drop(self, upload_id)
            die()

        MultipartStore.drop_parts = drop_then_die  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown point {point!r}")


async def main(data_dir: str, point: str) -> None:
    options = {"multipart_threshold": PART, "multipart_part_size": PART}
    async with Emulator(data_dir=data_dir, **options) as emu:  # type: ignore[arg-type]
        arm(point)  # after start: starting sweeps part files too
        print(emu.base_url, emu.storage_url, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))

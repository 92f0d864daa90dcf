"""The process the resume test SIGKILLs: it uploads one file with a journal and prints
``sent <bytes>`` after each progress event, so the test knows when to kill it. Once
``FREEZE_AT`` bytes are sent it freezes its event loop until killed, so the kill always
lands mid-upload, however fast the parts go.

Run as ``python -m tests.multipart._upload_child BASE_URL API_KEY FILE JOURNAL FREEZE_AT``.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import threading

from gateway_async import Gateway, UploadProgress


def report(freeze_at: int, event: UploadProgress) -> None:
    print(f"sent {event.bytes_sent}", flush=True)
    if event.bytes_sent >= freeze_at:
        threading.Event().wait()  # nothing more happens in this process: SIGKILL comes


async def main(base_url: str, api_key: str, path: str, journal: str, freeze_at: str) -> None:
    on_progress = functools.partial(report, int(freeze_at))
    async with Gateway(api_key=api_key, base_url=base_url, allow_insecure_http=True) as gw:
        ref = await gw.media.upload(path, journal=journal, on_progress=on_progress)
    print(f"done {ref.media_ref}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))

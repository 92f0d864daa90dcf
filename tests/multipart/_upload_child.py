"""The process the resume test SIGKILLs: it uploads one file with a journal and prints
``sent <bytes>`` after each progress event, so the test knows when to kill it.

Run as ``python -m tests.multipart._upload_child BASE_URL API_KEY FILE JOURNAL``.
"""

from __future__ import annotations

import asyncio
import sys

from gateway_async import Gateway, UploadProgress


def report(event: UploadProgress) -> None:
    print(f"sent {event.bytes_sent}", flush=True)


async def main(base_url: str, api_key: str, path: str, journal: str) -> None:
    async with Gateway(api_key=api_key, base_url=base_url, allow_insecure_http=True) as gw:
        ref = await gw.media.upload(path, journal=journal, on_progress=report)
    print(f"done {ref.media_ref}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))

"""``on_progress`` is an observer: whatever it raises, the upload's outcome is unchanged.

It used to be called bare: a raising callback failed ``upload`` with its RuntimeError (the
upload never completed), and one raising ``CancelledError`` made ``upload_many`` of 3
sources return ``[]``. It now goes through the client's one observer boundary.
"""

from __future__ import annotations

import asyncio
import logging
import os

import pytest

from gateway_async import MediaRef, UploadProgress
from gateway_async.emulator import Emulator


@pytest.mark.parametrize("raised", [RuntimeError, asyncio.CancelledError])
@pytest.mark.parametrize("threshold", [None, 1024], ids=["single", "multipart"])
async def test_a_raising_on_progress_never_changes_the_upload(
    raised: type[BaseException], threshold: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    def on_progress(event: UploadProgress) -> None:
        nonlocal calls
        calls += 1
        raise raised("observer bug")

    async with Emulator(multipart_threshold=threshold) as emu, emu.client() as gw:
        one = await gw.media.upload(os.urandom(3000), filename="a.bin", on_progress=on_progress)
        many = await gw.media.upload_many(
            [os.urandom(3000) for _ in range(3)], on_progress=on_progress
        )
        assert isinstance(one, MediaRef)
        assert [type(result) for result in many] == [MediaRef] * 3
        assert emu.stats.uploads_completed == 4
        assert calls >= 4
        assert gw.observer_failures == {"on_progress": calls}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per kind
    assert "on_progress" in warnings[0].getMessage()
    assert "observer bug" not in warnings[0].getMessage()  # the class, never the message


async def test_a_real_cancellation_from_the_callback_still_cancels_the_upload() -> None:
    """The seam: containing the callback's own CancelledError must not swallow a real
    cancellation of the task (here requested by the callback itself)."""

    def cancel_me(event: UploadProgress) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()

    async with Emulator() as emu, emu.client() as gw:
        upload = asyncio.ensure_future(
            gw.media.upload(os.urandom(3000), filename="a.bin", on_progress=cancel_me)
        )
        with pytest.raises(asyncio.CancelledError):
            await upload
        assert gw.observer_failures == {}

"""``gw.media.upload(idempotency_key=...)`` against the emulator: a repeated upload replays.

Ray retries re-run whole batches; these tests pin down the SDK behaviour the Ray layer
relies on, without Ray: the same key gives the same ``upload_id`` and ``media_ref``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from gateway_async import InvalidRequestError, RetryPolicy
from gateway_async.emulator import Emulator


class Clock:
    """The emulator's clock, moved by hand to expire upload URLs without waiting."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest_asyncio.fixture
async def emulator(clock: Clock) -> AsyncIterator[Emulator]:
    async with Emulator(clock=clock) as emu:
        yield emu


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.bin"
    path.write_bytes(b"pixels" * 1000)
    return path


async def test_same_key_replays_the_same_upload(emulator: Emulator, photo: Path) -> None:
    """A second upload with the key of the first returns its media_ref and creates nothing."""
    async with emulator.client() as gw:
        first = await gw.media.upload(photo, idempotency_key="job-1/photo.bin")
        again = await gw.media.upload(photo, idempotency_key="job-1/photo.bin")
    assert first == again
    assert (emulator.stats.uploads_initiated, emulator.stats.uploads_completed) == (1, 1)
    assert emulator.stats.replays == 2  # init and complete


async def test_other_keys_make_other_uploads(emulator: Emulator, photo: Path) -> None:
    """Distinct keys (or none) stay distinct uploads, as before."""
    async with emulator.client() as gw:
        one = await gw.media.upload(photo, idempotency_key="a")
        two = await gw.media.upload(photo, idempotency_key="b")
        three = await gw.media.upload(photo)
    assert len({one.media_ref, two.media_ref, three.media_ref}) == 3
    assert emulator.stats.replays == 0


@pytest.mark.parametrize("key", ["", "has space", "é", "k" * 256, 7])
async def test_bad_key_is_refused_before_sending(
    emulator: Emulator, photo: Path, key: object
) -> None:
    """A key the Gateway would refuse fails locally, naming the field, with no request."""
    async with emulator.client() as gw:
        with pytest.raises(InvalidRequestError) as info:
            await gw.media.upload(photo, idempotency_key=key)  # type: ignore[arg-type]
    assert info.value.field == "idempotency_key"
    assert sum(emulator.stats.requests_by_route.values()) == 0


async def test_expired_ticket_before_the_retry_uploads_again(
    emulator: Emulator, clock: Clock, photo: Path
) -> None:
    """The documented exception: once the first upload's URL expired, the replayed init
    is refused by storage, the re-init (its own derived key) makes a second upload."""
    async with emulator.client(retry=RetryPolicy(base_delay=0.0, max_delay=0.0)) as gw:
        first = await gw.media.upload(photo, idempotency_key="job-1/photo.bin")
        clock.now += 3600
        again = await gw.media.upload(photo, idempotency_key="job-1/photo.bin")
        # The re-init's key is derived too: a third call replays the second upload.
        third = await gw.media.upload(photo, idempotency_key="job-1/photo.bin")
    assert first.media_ref != again.media_ref
    assert again == third
    assert emulator.stats.uploads_initiated == 2

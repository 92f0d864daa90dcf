"""Failures of single parts: only that part is sent again (storage's byte count proves
it), expired part URLs are re-signed, a vanished upload starts over once, and a file that
changes mid-upload never completes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from gateway_async import Gateway, InvalidRequestError, Limits, UploadError, UploadProgress
from gateway_async.emulator import Emulator
from gateway_async.emulator import _multipart as emulator_multipart
from gateway_async.emulator import _storage as emulator_storage
from gateway_async.emulator._faults import Decision
from tests.emulator.conftest import FakeClock
from tests.uploads.conftest import threads_left

from .conftest import PART, quick_retries, script_faults

DATA = os.urandom(7 * PART + 4321)  # eight parts
SMALL = DATA[: 3 * PART + 4321]  # four parts, where the byte count does not matter
LIMIT = 1.2 * len(DATA)  # the bound for one failed part
REFRESH = "POST /api/media/upload/parts"


@pytest.fixture
def media(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(DATA)
    return path


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.bin"
    path.write_bytes(SMALL)
    return path


async def assert_exact(emu: Emulator, ref: Any, data: bytes = DATA) -> None:
    assert emu.media_path(ref.media_ref).read_bytes() == data
    assert emu.stats.uploads_completed == 1


@pytest.mark.parametrize(
    "fault",
    [Decision(reset="before"), Decision(status=503)],
    ids=["reset mid-part", "503"],
)
async def test_one_failed_part_is_sent_again_alone(
    emu: Emulator, gw: Gateway, media: Path, fault: Decision
) -> None:
    script_faults(emu, Decision(), Decision(), fault)
    ref = await gw.media.upload(media)
    await assert_exact(emu, ref)
    assert emu.stats.puts >= 9  # eight parts and the failed one again
    assert len(DATA) <= emu.stats.bytes_received < LIMIT
    assert emu.stats.uploads_initiated == 1


async def test_a_stalled_part_is_sent_again(emu: Emulator, media: Path) -> None:
    script_faults(emu, Decision(latency=1.5))  # storage sits on the first part's body
    async with emu.client(retry=quick_retries(), upload_stall_timeout=0.5) as gw:
        ref = await gw.media.upload(media)
    await assert_exact(emu, ref)
    assert emu.stats.puts >= 9  # the stalled part was given up on and sent again
    assert emu.stats.bytes_received < LIMIT


async def test_a_part_failing_every_retry_fails_the_upload(emu: Emulator, media: Path) -> None:
    script_faults(emu, *[Decision(status=503)] * 3)
    async with emu.client(retry=quick_retries(max_retries=1), upload_stall_timeout=5) as gw:
        with pytest.raises(UploadError, match="503") as failed:
            await gw.media.upload(media, part_concurrency=1)
    assert failed.value.retryable
    assert emu.stats.requests_by_route["POST /api/media/upload/complete"] == 0


async def test_expired_part_urls_are_refreshed(
    emu: Emulator, gw: Gateway, small: Path, clock: FakeClock
) -> None:
    def expire_once(event: UploadProgress) -> None:
        if clock.now < 1e10 and event.bytes_sent > 0:
            clock.advance(1e10)  # every URL signed so far is now past its expiry

    ref = await gw.media.upload(small, on_progress=expire_once, part_concurrency=2)
    await assert_exact(emu, ref, SMALL)
    assert emu.stats.requests_by_route[REFRESH] >= 1
    assert emu.stats.uploads_initiated == 1
    assert emu.stats.bytes_received < 1.2 * len(SMALL)  # refused before the body is read


async def test_a_vanished_upload_starts_over_once(emu: Emulator, gw: Gateway, small: Path) -> None:
    aborted: list[str] = []

    def abort_once(event: UploadProgress) -> None:
        if not aborted and event.bytes_sent >= PART:
            aborted.extend(emu.core.multipart.records)
            emu.core.multipart.abort(aborted[0])  # S3: the multipart upload was aborted

    ref = await gw.media.upload(small, on_progress=abort_once)
    await assert_exact(emu, ref, SMALL)
    assert emu.stats.uploads_initiated == 2


@pytest.mark.parametrize("how", ["appended", "rewritten in place, mtime set back"])
async def test_a_file_changed_mid_upload_never_completes(
    emu: Emulator, gw: Gateway, media: Path, how: str
) -> None:
    changed: list[bool] = []

    def change(event: UploadProgress) -> None:
        if event.bytes_sent > 0 and not changed:
            changed.append(True)
            if how == "appended":
                with media.open("ab") as handle:
                    handle.write(b"appended while uploading")
            else:  # rsync --inplace -t: same size, the old mtime put back
                info = media.stat()
                with media.open("r+b") as handle:
                    handle.write(b"\xff" * 4096)
                os.utime(media, ns=(info.st_atime_ns, info.st_mtime_ns))

    with pytest.raises(UploadError, match="changed while it was uploading"):
        await gw.media.upload(media, on_progress=change, part_concurrency=1)
    assert emu.stats.requests_by_route["POST /api/media/upload/complete"] == 0


@pytest.mark.parametrize(("part_concurrency", "client_bound", "peak"), [(3, 16, 3), (4, 2, 2)])
async def test_parts_in_flight_stay_within_both_bounds(
    emu: Emulator,
    small: Path,
    monkeypatch: pytest.MonkeyPatch,
    part_concurrency: int,
    client_bound: int,
    peak: int,
) -> None:
    in_flight, seen = 0, []
    real = emulator_multipart.serve_put

    async def counting(request: Any, resolve: Any) -> Any:
        nonlocal in_flight
        in_flight += 1
        seen.append(in_flight)
        try:
            return await real(request, resolve)
        finally:
            in_flight -= 1

    monkeypatch.setattr(emulator_multipart, "serve_put", counting)
    limits = Limits(max_concurrent_uploads=client_bound)
    async with emu.client(retry=quick_retries(), limits=limits) as gw:
        ref = await gw.media.upload(small, part_concurrency=part_concurrency)
    await assert_exact(emu, ref, SMALL)
    assert max(seen) == peak


async def _chunks(data: bytes) -> Any:
    for start in range(0, len(data), PART // 2):
        yield data[start : start + PART // 2]


@pytest.mark.parametrize(("kind", "peak"), [("path", 8), ("bytes", 8), ("async iterable", 4)])
async def test_by_default_eight_parts_go_at_once_and_four_of_an_async_iterable(
    emu: Emulator, media: Path, monkeypatch: pytest.MonkeyPatch, kind: str, peak: int
) -> None:
    """Every part PUT waits at storage until ``peak`` are in flight: fewer at once would
    never get there (the timeout fails the test), more would show in the count."""
    in_flight, seen, full = 0, [], asyncio.Event()
    real = emulator_multipart.serve_put

    async def barrier(request: Any, resolve: Any) -> Any:
        nonlocal in_flight
        in_flight += 1
        seen.append(in_flight)
        if in_flight == peak:
            full.set()
        try:
            await full.wait()
            return await real(request, resolve)
        finally:
            in_flight -= 1

    monkeypatch.setattr(emulator_multipart, "serve_put", barrier)
    sources: dict[str, Any] = {"path": media, "bytes": DATA, "async iterable": _chunks(DATA)}
    size = {"size": len(DATA)} if kind == "async iterable" else {}
    try:
        async with emu.client(retry=quick_retries()) as gw, asyncio.timeout(10):
            ref = await gw.media.upload(sources[kind], **size)
    finally:
        full.set()  # a failed run leaves no handler waiting for the emulator to close
    await assert_exact(emu, ref)
    assert max(seen) == peak


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "4"])
async def test_bad_part_concurrency_is_refused_before_any_request(
    emu: Emulator, gw: Gateway, value: Any
) -> None:
    with pytest.raises(InvalidRequestError, match="part_concurrency") as refused:
        await gw.media.upload(b"x", part_concurrency=value)
    assert refused.value.field == "part_concurrency"
    with pytest.raises(InvalidRequestError):
        await gw.media.upload_many([b"x"], part_concurrency=value)
    assert sum(emu.stats.requests_by_route.values()) == 0


async def test_progress_counts_bytes_across_parts(emu: Emulator, gw: Gateway) -> None:
    seen: list[int] = []
    ref = await gw.media.upload(SMALL, on_progress=lambda e: seen.append(e.bytes_sent))
    await assert_exact(emu, ref, SMALL)
    assert seen == sorted(seen)
    assert seen[-1] == len(SMALL)
    assert len(seen) > 4  # several events per part, summed across parts


@pytest.mark.parametrize(("extra", "which"), [(b"!", "more"), (None, "fewer")])
async def test_a_stream_of_another_size_never_completes(
    emu: Emulator, gw: Gateway, extra: bytes | None, which: str
) -> None:
    data = DATA[: 2 * PART + 1]

    async def stream() -> Any:
        yield data[:PART]
        yield data[PART:] if extra is None else data[PART:] + extra

    size = len(data) + (1 if extra is None else 0)
    with pytest.raises(UploadError, match=f"gave {which} bytes"):
        await gw.media.upload(stream(), size=size)
    assert emu.stats.requests_by_route["POST /api/media/upload/complete"] == 0


async def test_a_part_refused_after_fresh_urls_fails_without_leaking_them(
    emu: Emulator, gw: Gateway, small: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storage refusing every signature: two refreshes, then an error naming the part, and
    no signed URL in it."""
    monkeypatch.setattr(emulator_storage, "verify", lambda *_: None)
    with pytest.raises(UploadError, match="refused part") as failed:
        await gw.media.upload(small, part_concurrency=1)
    assert failed.value.status_code == 403
    assert "X-Emu-Signature" not in str(failed.value)
    assert emu.stats.requests_by_route[REFRESH] == 2
    assert emu.stats.requests_by_route["POST /api/media/upload/complete"] == 0


async def test_cancelling_a_multipart_upload_leaves_nothing_running(
    emu: Emulator, gw: Gateway, small: Path
) -> None:
    """Cancelled mid-way: every part's reader thread is gone and the file is closed (the
    suite runs with warnings as errors, so an unclosed file or session would fail it)."""
    started = asyncio.Event()

    def progress(event: UploadProgress) -> None:
        if event.bytes_sent > PART:
            started.set()

    upload = asyncio.create_task(gw.media.upload(small, on_progress=progress))
    await started.wait()
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert threads_left("gateway-read") == []
    assert threads_left("gateway-hash") == []
    assert emu.stats.requests_by_route["POST /api/media/upload/complete"] == 0

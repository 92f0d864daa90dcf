"""An upload's identity is (job, sha256, size) of the bytes sent: a rerun of a job from any
process sends no byte the workspace already holds, against version-3 servers (content
already held) and older ones (the replayed init names the first upload)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway_async import ConflictError, Gateway, InvalidRequestError, testing
from gateway_async.emulator import Emulator

from .conftest import without_held_content

DATA = b"the same photo " * 1000


async def upload(emu: Emulator, source: object, **kwargs: object) -> object:
    """One upload from a fresh client (another process, another machine)."""
    async with emu.client(retry=testing.FAST_RETRY) as gw:
        return await gw.media.upload(source, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", [3, 2])
async def test_a_rerun_of_a_job_sends_no_byte_again(
    emu: Emulator, tmp_path: Path, version: int
) -> None:
    if version == 2:
        without_held_content(emu)
    path = tmp_path / "a.png"
    path.write_bytes(DATA)
    first = await upload(emu, path, job="photos")
    again = await upload(emu, path, job="photos")
    assert again == first
    assert first.sha256 == hashlib.sha256(DATA).hexdigest()  # type: ignore[attr-defined]
    assert (emu.stats.puts, emu.stats.uploads_completed) == (1, 1)


async def test_held_content_under_another_name_or_job_is_not_sent(
    emu: Emulator, tmp_path: Path
) -> None:
    """Version 3: another name (a rename) or another job: init answers 200, no PUT."""
    (tmp_path / "a.png").write_bytes(DATA)
    (tmp_path / "b.png").write_bytes(DATA)
    first = await upload(emu, tmp_path / "a.png", job="photos")
    renamed = await upload(emu, tmp_path / "b.png", job="photos")
    other_job = await upload(emu, DATA, job="other", filename="c.png")
    assert {renamed.media_ref, other_job.media_ref} == {first.media_ref}  # type: ignore[attr-defined]
    assert renamed.filename == "b.png"  # type: ignore[attr-defined]
    assert emu.stats.puts == 1
    assert emu.stats.uploads_deduplicated == 2


async def test_a_replayed_init_of_a_pending_upload_sends_the_bytes(
    emu: Emulator, tmp_path: Path
) -> None:
    """The first process initiated, then died before its PUT: the rerun's init replays
    that ticket, the listing says pending, so the bytes go (once) and complete follows."""
    without_held_content(emu)
    path = tmp_path / "a.png"
    path.write_bytes(DATA)
    async with emu.client(retry=testing.FAST_RETRY) as gw:
        died = gw.media.upload(path, job="photos")
        emu.set_faults(None)
        # Run only the init of the first upload: cancel it at its PUT.
        import asyncio

        from gateway_async._upload import storage

        started = asyncio.Event()
        original = storage.Storage.put

        async def stop_at_put(*args: object, **kwargs: object) -> object:
            started.set()
            await asyncio.Event().wait()
            raise AssertionError

        storage.Storage.put = stop_at_put  # type: ignore[method-assign]
        try:
            task = asyncio.ensure_future(died)
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            storage.Storage.put = original  # type: ignore[method-assign]
    assert (emu.stats.uploads_initiated, emu.stats.puts) == (1, 0)
    media = await upload(emu, path, job="photos")
    assert (emu.stats.uploads_initiated, emu.stats.puts, emu.stats.uploads_completed) == (1, 1, 1)
    assert emu.media_path(media.media_ref).read_bytes() == DATA  # type: ignore[attr-defined]


async def test_a_key_without_a_checksum_is_refused_before_any_request(
    emu: Emulator, gateway: Gateway
) -> None:
    """Defect 5: upload(b, idempotency_key=k, checksum=False) after other bytes under k
    returned the first upload's media_ref for the other bytes."""
    first = await gateway.media.upload(b"first bytes", idempotency_key="k-1")
    sent = sum(emu.stats.requests_by_route.values())
    with pytest.raises(InvalidRequestError, match="checksum") as info:
        await gateway.media.upload(b"other bytes", idempotency_key="k-1", checksum=False)
    assert info.value.field == "checksum"
    with pytest.raises(InvalidRequestError, match="checksum"):
        await gateway.media.upload(b"other bytes", job="photos", checksum=False)
    assert sum(emu.stats.requests_by_route.values()) == sent
    with pytest.raises(ConflictError):  # with the checksum: a conflict, never a ref
        await gateway.media.upload(b"other bytes", idempotency_key="k-1")
    with pytest.raises(ConflictError):  # even of the same size
        await gateway.media.upload(b"first_bytes", idempotency_key="k-1")
    assert first.media_ref.startswith("mref_")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"job": ""}, "job"),
        ({"job": "j", "idempotency_key": "k"}, "idempotency_key"),
    ],
)
async def test_bad_identities_are_refused_before_any_request(
    emu: Emulator, gateway: Gateway, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await gateway.media.upload(b"x", **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert not emu.stats.requests_by_route


async def test_a_stream_cannot_be_named_by_its_content(emu: Emulator, gateway: Gateway) -> None:
    async def chunks() -> object:
        yield b"abc"

    with pytest.raises(InvalidRequestError, match="async iterable") as info:
        await gateway.media.upload(chunks(), size=3, job="photos")  # type: ignore[arg-type]
    assert info.value.field == "job"
    assert not emu.stats.requests_by_route


async def test_upload_many_with_a_job_sends_each_content_once(
    emu: Emulator, gateway: Gateway, tmp_path: Path
) -> None:
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(b"%d" % (i % 3) * 3000)  # three distinct contents, twice each
    first = await gateway.media.upload_many(paths, job="batch")
    sent = emu.stats.puts
    assert sent <= 6  # duplicates under way at once may both be sent
    again = await gateway.media.upload_many(paths, job="batch")
    assert [str(m) for m in again] == [str(m) for m in first]
    assert emu.stats.puts == sent
    renamed = await gateway.media.upload_many([paths[0], paths[1]], job="other")
    assert emu.stats.puts == sent  # held content: answered by init alone
    assert [m.sha256 for m in renamed] == [m.sha256 for m in first[:2]]  # type: ignore[union-attr]

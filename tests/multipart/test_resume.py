"""Resume after a crash: the journal names the upload before its first part, a restarted
process lists what storage holds, checks it against its own file, and sends the rest."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway_async import Gateway, InvalidRequestError
from gateway_async._upload.files import LocalFiles
from gateway_async._upload.parts import structure_ticket
from gateway_async._upload.resume import ResumeJournal, resume_key
from gateway_async._upload.sources import prepare_source
from gateway_async.emulator import Emulator
from tests.emulator.conftest import Api

from .conftest import PART, MiB, put_part

ROOT = Path(__file__).resolve().parents[2]
BIG = 200 * MiB
BIG_PART = 8 * MiB
COMPLETE = "POST /api/media/upload/complete"


async def _upload_until_killed(emu: Emulator, path: Path, journal: Path, kill_at: int) -> int:
    """Run the child uploader and SIGKILL it once it reported ``kill_at`` bytes sent."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-W", "error", "-m", "tests.multipart._upload_child"),
        *(emu.base_url, emu.api_key, str(path), str(journal), str(kill_at)),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    sent = 0
    while sent < kill_at:
        line = await asyncio.wait_for(child.stdout.readline(), 60)
        assert line.startswith(b"sent "), line + (
            await child.stderr.read() if child.stderr else b""
        )
        sent = int(line.split()[1])
    child.kill()
    await child.communicate()
    return sent


async def test_a_killed_upload_resumes_with_the_missing_parts_only(tmp_path: Path) -> None:
    """SIGKILL mid-way through 200 MiB in 8 MiB parts, then resume: storage gets less than
    1.3x the file in all, one complete, and the media is byte-exact."""
    path, journal = tmp_path / "video.bin", tmp_path / "journal.sqlite"
    data = os.urandom(BIG)
    path.write_bytes(data)
    options = {"multipart_threshold": BIG_PART, "multipart_part_size": BIG_PART}
    async with Emulator(**options) as emu:  # type: ignore[arg-type]
        await _upload_until_killed(emu, path, journal, kill_at=BIG // 2)
        received_before = emu.stats.bytes_received
        assert emu.stats.uploads_completed == 0
        async with emu.client() as gw:
            ref = await gw.media.upload(path, journal=journal)
        assert emu.media_path(ref.media_ref).read_bytes() == data
        assert emu.stats.bytes_received < 1.3 * BIG
        assert emu.stats.bytes_received - received_before < 0.9 * BIG  # not from byte 0
        assert emu.stats.uploads_initiated == 1
        assert emu.stats.requests_by_route[COMPLETE] == 1
    with sqlite3.connect(journal) as db:  # a finished upload leaves nothing to resume
        assert db.execute("SELECT count(*) FROM multipart_uploads").fetchone() == (0,)


@pytest.fixture
def media(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "media.bin"
    data = os.urandom(3 * PART + 1)  # four parts
    path.write_bytes(data)
    return path, data


async def crashed_upload(
    api: Api, media: tuple[Path, bytes], journal: Path, stored: list[int]
) -> str:
    """What a process that died mid-upload leaves: a journaled upload_id, and the parts
    ``stored`` both held by storage and journaled with their sha256 and ETag."""
    path, data = media
    body = {"filename": path.name, "content_type": "application/octet-stream", "size": len(data)}
    ticket = (await api.post("/api/media/upload/init", body)).body
    source = await prepare_source(path, files=LocalFiles())
    key = resume_key(source)
    assert key is not None
    async with ResumeJournal.at(journal) as resume:
        await resume.begin(key, len(data), structure_ticket(ticket, None))  # type: ignore[arg-type]
        for number in stored:
            chunk = data[(number - 1) * PART : number * PART]
            response = await put_part(api.session, ticket, number, chunk)
            sha256 = hashlib.sha256(chunk).hexdigest()
            await resume.part_stored(ticket["upload_id"], number, sha256, response.headers["ETag"])
    upload_id: str = ticket["upload_id"]
    return upload_id


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "j.sqlite"


async def resume(emu: Emulator, gw: Gateway, media: tuple[Path, bytes], journal: Path) -> Any:
    """Upload ``media`` again with the journal; check it byte-exact; return the MediaRef and
    how many bytes storage received for it."""
    before = emu.stats.bytes_received
    ref = await gw.media.upload(media[0], journal=journal)
    assert emu.media_path(ref.media_ref).read_bytes() == media[1]
    return ref, emu.stats.bytes_received - before


async def test_resume_sends_only_the_missing_parts(
    api: Api, emu: Emulator, gw: Gateway, media: tuple[Path, bytes], journal: Path
) -> None:
    await crashed_upload(api, media, journal, stored=[1, 3])
    _, sent = await resume(emu, gw, media, journal)
    assert sent == PART + 1  # parts 2 and 4
    assert emu.stats.uploads_initiated == 1


async def test_a_part_whose_journaled_sha256_differs_is_sent_again(
    api: Api, emu: Emulator, gw: Gateway, media: tuple[Path, bytes], journal: Path
) -> None:
    upload_id = await crashed_upload(api, media, journal, stored=[1, 2, 3, 4])
    with sqlite3.connect(journal) as db:  # as if part 2 was stored from other bytes
        db.execute("UPDATE multipart_parts SET sha256 = ? WHERE part_number = 2", ("0" * 64,))
    ref, sent = await resume(emu, gw, media, journal)
    assert sent == PART
    assert ref.media_ref == emu.core.state.uploads[upload_id].media_ref


async def test_a_part_storage_lost_is_sent_again(
    api: Api, emu: Emulator, gw: Gateway, media: tuple[Path, bytes], journal: Path
) -> None:
    upload_id = await crashed_upload(api, media, journal, stored=[1, 2])
    del emu.core.multipart.records[upload_id].parts["1"]
    _, sent = await resume(emu, gw, media, journal)
    assert sent == 2 * PART + 1  # parts 1, 3 and 4


async def test_an_upload_the_server_forgot_starts_afresh(
    api: Api, emu: Emulator, gw: Gateway, media: tuple[Path, bytes], journal: Path
) -> None:
    upload_id = await crashed_upload(api, media, journal, stored=[1])
    del emu.core.state.uploads[upload_id]
    await resume(emu, gw, media, journal)
    assert emu.stats.uploads_initiated == 2


async def test_a_crash_after_complete_completes_again(
    api: Api, emu: Emulator, gw: Gateway, media: tuple[Path, bytes], journal: Path
) -> None:
    upload_id = await crashed_upload(api, media, journal, stored=[1, 2, 3, 4])
    first = await api.post(
        "/api/media/upload/complete",
        {
            "upload_id": upload_id,
            "parts": [
                {
                    "part_number": n,
                    "etag": emu.core.multipart.records[upload_id].parts[str(n)]["etag"],
                }
                for n in range(1, 5)
            ],
        },
    )
    puts = emu.stats.puts
    ref, _ = await resume(emu, gw, media, journal)
    assert ref.media_ref == first.body["media_ref"]
    assert emu.stats.puts == puts


async def test_an_edited_file_does_not_resume(
    api: Api, emu: Emulator, gw: Gateway, media: tuple[Path, bytes], journal: Path
) -> None:
    await crashed_upload(api, media, journal, stored=[1, 2, 3])
    path, data = media
    edited = b"X" + data[1:]
    path.write_bytes(edited)
    os.utime(path, ns=(1, 1))
    await resume(emu, gw, (path, edited), journal)
    assert emu.stats.uploads_initiated == 2


async def test_a_bad_journal_is_refused_before_any_request(emu: Emulator, gw: Gateway) -> None:
    with pytest.raises(InvalidRequestError, match="journal"):
        await gw.media.upload(b"x", journal=42)  # type: ignore[arg-type]
    assert sum(emu.stats.requests_by_route.values()) == 0


async def test_ingest_resumes_through_its_journal(
    api: Api, emu: Emulator, gw: Gateway, media: tuple[Path, bytes], journal: Path
) -> None:
    """``gw.ingest(journal=...)`` resumes a multipart upload journaled in the same file."""
    path, data = media
    await crashed_upload(api, media, journal, stored=[1, 2, 4])
    before = emu.stats.bytes_received
    items = [
        item
        async for item in gw.ingest(
            [path], model="demo-image-embed", scope="resume", journal=journal
        )
    ]
    (item,) = items
    assert item.media_ref is not None
    assert emu.media_path(item.media_ref.media_ref).read_bytes() == data
    assert emu.stats.bytes_received - before == PART  # part 3 only
    assert emu.stats.uploads_initiated == 1


@pytest.mark.parametrize("kind", ["path", "bytes"])
async def test_an_idempotency_key_repeats_a_multipart_upload_once(
    emu: Emulator, gw: Gateway, media: tuple[Path, bytes], kind: str
) -> None:
    """A job retried with the same key gets the same media_ref: the replayed init names the
    completed upload, and ``complete`` is replayed with the same parts and sha256s."""
    source = media[0] if kind == "path" else media[1]
    first = await gw.media.upload(source, idempotency_key="job-17")
    puts = emu.stats.puts
    again = await gw.media.upload(source, idempotency_key="job-17")
    assert again.media_ref == first.media_ref
    assert emu.stats.puts == puts  # nothing sent again
    assert (emu.stats.uploads_initiated, emu.stats.uploads_completed) == (1, 1)

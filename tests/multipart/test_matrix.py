"""Every source kind below, at and above the threshold, in one, two (the last of one
byte) and many parts: byte-exact on the emulator, one PUT per part, one complete."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway_async import UploadProgress
from gateway_async.emulator import Emulator

from .conftest import PART, THRESHOLD, MiB, quick_retries

DATA = os.urandom(3 * PART + 12_345)

# (case, emulator threshold, size, expected storage PUTs)
CASES = [
    ("below", THRESHOLD, THRESHOLD - 1, 1),
    ("at", THRESHOLD, THRESHOLD, 1),
    ("one part", 1 * MiB, 3 * MiB, 1),
    ("two parts, last of 1 byte", THRESHOLD, PART + 1, 2),
    ("many parts", THRESHOLD, len(DATA), 4),
]


async def _stream(data: bytes) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), 700_001):  # chunks that straddle part boundaries
        yield data[offset : offset + 700_001]


def make_source(kind: str, data: bytes, tmp_path: Path) -> tuple[Any, dict[str, Any]]:
    if kind == "bytes":
        return data, {}
    if kind == "stream":
        return _stream(data), {"size": len(data)}
    path = tmp_path / "media.bin"
    path.write_bytes(b"head" + data)
    if kind == "path":
        path.write_bytes(data)
        return path, {}
    handle = path.open("rb")
    handle.seek(4)  # a file object is uploaded from its position
    return handle, {}


@pytest.mark.parametrize("kind", ["path", "bytes", "file", "stream"])
@pytest.mark.parametrize(("case", "threshold", "size", "puts"), CASES, ids=[c[0] for c in CASES])
async def test_matrix(
    kind: str, case: str, threshold: int, size: int, puts: int, tmp_path: Path
) -> None:
    """The same call and the same MediaRef whichever way the server answers."""
    data = DATA[:size]
    source, extra = make_source(kind, data, tmp_path)
    seen: list[int] = []

    def progress(event: UploadProgress) -> None:
        seen.append(event.bytes_sent)

    async with (
        Emulator(multipart_threshold=threshold, multipart_part_size=PART) as emu,
        emu.client(retry=quick_retries()) as gw,
    ):
        try:
            ref = await gw.media.upload(source, on_progress=progress, **extra)
        finally:
            if isinstance(source, io.IOBase):
                source.close()
        assert emu.media_path(ref.media_ref).read_bytes() == data
        assert ref.sha256 == hashlib.sha256(data).hexdigest()
        assert ref.size == size
        assert (emu.stats.puts, emu.stats.uploads_completed) == (puts, 1)
        assert emu.stats.bytes_received == size
        assert emu.stats.credential_leaks == 0
        assert seen[-1] == size
        assert max(seen) == size


async def test_upload_many_mixes_single_and_multipart(tmp_path: Path) -> None:
    """One ``upload_many`` call, some files above the threshold and some below."""
    sizes = [PART + 1, 100, THRESHOLD, 2 * PART + 7]
    paths = []
    for number, size in enumerate(sizes):
        paths.append(tmp_path / f"{number}.bin")
        paths[-1].write_bytes(DATA[:size])
    async with (
        Emulator(multipart_threshold=THRESHOLD, multipart_part_size=PART) as emu,
        emu.client(retry=quick_retries()) as gw,
    ):
        refs = await gw.media.upload_many(paths, concurrency=2, part_concurrency=2)
        for ref, size in zip(refs, sizes, strict=True):
            assert not isinstance(ref, Exception)
            assert emu.media_path(ref.media_ref).read_bytes() == DATA[:size]
        assert emu.stats.puts == 2 + 1 + 1 + 3

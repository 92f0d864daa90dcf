"""What reaches storage: exact bytes, Content-Length, the signed URL untouched, no secrets."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway_async import Gateway, MediaRef
from tests.conftest import TEST_KEY
from tests.uploads.conftest import UploadServers

DATA = os.urandom(5 * 1024 * 1024 + 123)  # above the one-read threshold: streamed in chunks
DIGEST = hashlib.sha256(DATA).hexdigest()


async def chunks_of(data: bytes, size: int = 700_000) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


def kinds(tmp_path: Path, data: bytes) -> list[tuple[str, Any, dict[str, Any]]]:
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    handle = io.BytesIO(b"skip" + data)
    handle.seek(4)  # a file object is uploaded from its current position
    return [
        ("path", str(path), {}),
        ("pathlike", path, {}),
        ("bytes", data, {}),
        ("bytearray", bytearray(data), {}),
        ("memoryview", memoryview(data), {}),
        ("file object", handle, {}),
        ("async iterable", chunks_of(data), {"size": len(data)}),
    ]


# Streamed in 1 MiB chunks; read whole and sent as one body (hashed on the loop, or in the
# file thread while init is sent); streamed in two chunks; empty.
SIZES = {
    "5 MiB": len(DATA),
    "100 KiB": 100 * 1024,
    "512 KiB": 512 * 1024,
    "2 MiB": 2 * 1024 * 1024,
    "empty": 0,
}


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize(
    "kind",
    range(7),
    ids=lambda i: ["path", "pathlike", "bytes", "bytearray", "memoryview", "file", "aiter"][i],
)
async def test_every_source_kind_round_trips_byte_exact(
    servers: UploadServers, gw: Gateway, tmp_path: Path, kind: int, size: int
) -> None:
    """Each source kind arrives byte for byte, and complete carries the streamed sha256."""
    data = DATA[:size]
    digest = hashlib.sha256(data).hexdigest()
    _, source, extra = kinds(tmp_path, data)[kind]
    ref = await gw.media.upload(source, **extra)
    assert isinstance(ref, MediaRef)
    assert servers.puts[0].sha256 == digest
    assert servers.puts[0].size == size
    assert servers.completes == [{"upload_id": "upl_1", "sha256": digest}]
    assert ref.sha256 == digest
    assert str(ref) == "mref_upl_1"


async def test_put_has_content_length_and_no_chunked_encoding(
    servers: UploadServers, gw: Gateway
) -> None:
    """Pre-signed URLs refuse chunked bodies: the PUT always declares its length."""
    await gw.media.upload(chunks_of(DATA), size=len(DATA))
    headers = servers.puts[0].headers
    assert headers["Content-Length"] == str(len(DATA))
    assert "Transfer-Encoding" not in headers


async def test_put_carries_no_gateway_credentials(servers: UploadServers, gw: Gateway) -> None:
    """Neither the API key nor any Authorization header reaches the storage host."""
    await gw.media.upload(DATA)
    headers = servers.puts[0].headers
    assert "X-API-Key" not in headers
    assert "Authorization" not in headers
    assert "Cookie" not in headers
    assert all(TEST_KEY not in value for value in headers.values())


async def test_presigned_url_is_used_byte_for_byte(servers: UploadServers, gw: Gateway) -> None:
    """%2F, %28 and %7E in the signed query arrive exactly as init sent them."""
    await gw.media.upload(b"hello")
    assert servers.puts[0].raw_query == servers.query


async def test_init_headers_are_sent_with_the_put(servers: UploadServers, gw: Gateway) -> None:
    """Headers from init (content type, signed metadata) go on the PUT unchanged."""
    await gw.media.upload(b"<svg/>", filename="pic.svg")
    headers = servers.puts[0].headers
    assert headers["x-amz-meta-origin"] == "sdk-test"
    assert headers["Content-Type"] == "image/svg+xml"
    assert servers.inits[0] == {"filename": "pic.svg", "content_type": "image/svg+xml", "size": 6}


async def test_checksum_false_skips_the_hash(servers: UploadServers, gw: Gateway) -> None:
    """checksum=False sends complete without sha256."""
    await gw.media.upload(DATA, checksum=False)
    assert servers.completes == [{"upload_id": "upl_1"}]


async def test_content_type_defaults(servers: UploadServers, gw: Gateway, tmp_path: Path) -> None:
    """The type is guessed from the file name, else application/octet-stream."""
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(b"\xff\xd8")
    await gw.media.upload(photo)
    await gw.media.upload(b"x", filename="noext")
    assert [i["content_type"] for i in servers.inits] == ["image/jpeg", "application/octet-stream"]
    assert servers.inits[0]["filename"] == "cat.jpg"

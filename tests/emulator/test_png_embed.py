"""The stdlib PNG codec and the deterministic embeddings built on it."""

from __future__ import annotations

import math
import os
import struct
import zlib
from pathlib import Path

import pytest

from gateway_async.emulator._embed import cosine, embed_file, embed_text
from gateway_async.emulator._png import PngError, decode, encode


def pattern(width: int, height: int, channels: int) -> bytes:
    return bytes(
        (x * 37 + y * 11 + c * 91) % 256
        for y in range(height)
        for x in range(width)
        for c in range(channels)
    )


@pytest.mark.parametrize("filter_type", range(5))
@pytest.mark.parametrize("alpha", [False, True])
def test_round_trip_every_filter(filter_type: int, alpha: bool) -> None:
    channels = 4 if alpha else 3
    pixels = pattern(13, 7, channels)
    image = decode(encode(13, 7, pixels, alpha=alpha, filter_type=filter_type))
    assert (image.width, image.height, image.channels, image.pixels) == (13, 7, channels, pixels)
    assert image.rgb(1, 0) == tuple(pixels[channels : channels + 3])


def _png(header: bytes, idat: bytes = b"") -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GIF89a", "signature"),
        (_png(struct.pack(">IIBBBBB", 2, 2, 16, 2, 0, 0, 0), zlib.compress(b"")), "8-bit"),
        (_png(struct.pack(">IIBBBBB", 2, 2, 8, 3, 0, 0, 0), zlib.compress(b"")), "8-bit"),
        (_png(struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 1), zlib.compress(b"")), "interlaced"),
        (_png(struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0), b"not zlib"), "corrupt"),
        (_png(struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0), zlib.compress(b"\0" * 5)), "length"),
        (_png(struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0), zlib.compress(b"\x07abc")), "filter"),
        (_png(struct.pack(">IIBBBBB", 9000, 9000, 8, 2, 0, 0, 0), b"x"), "outside"),
        (encode(2, 2, bytes(12))[:50], "truncated"),
        (encode(2, 2, bytes(12))[:40], "missing IHDR or IDAT"),
    ],
)
def test_decode_refuses_what_it_does_not_support(data: bytes, message: str) -> None:
    with pytest.raises(PngError, match=message):
        decode(data)


def test_encode_checks_its_input() -> None:
    with pytest.raises(PngError):
        encode(2, 2, bytes(5))
    with pytest.raises(PngError):
        encode(1, 1, bytes(3), filter_type=5)


def test_text_embedding_ranks_similar_text_higher() -> None:
    cat, cats, tax = (embed_text(t) for t in ("the cat sat", "The  CAT sat!", "tax returns"))
    assert math.isclose(cosine(cat, cat), 1.0)
    assert cosine(cat, cats) > cosine(cat, tax)
    assert embed_text("") == embed_text("   ")


def test_file_embeddings(tmp_path: Path) -> None:
    red = tmp_path / "red.png"
    red.write_bytes(encode(8, 8, bytes([255, 0, 0]) * 64))
    noise = tmp_path / "noise.bin"
    noise.write_bytes(os.urandom(5000))
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    vectors = [embed_file(p) for p in (red, noise, empty)]
    assert [len(v) for v in vectors] == [256, 256, 256]
    assert math.isclose(cosine(vectors[0], vectors[0]), 1.0)
    assert cosine(vectors[0], vectors[1]) == pytest.approx(0.0)
    assert vectors[2] == [0.0] * 256
    assert embed_file(red) == vectors[0]

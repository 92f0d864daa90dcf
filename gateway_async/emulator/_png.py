"""A tiny stdlib-only PNG codec: 8-bit RGB/RGBA, non-interlaced, all five row filters.

The image embedding model decodes uploaded PNGs to pixel statistics, and tests build
PNGs with :func:`encode`. Anything outside this subset raises :class:`PngError`, and the
embedding falls back to byte-level features.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 6: 4}  # colour type -> samples per pixel (RGB, RGBA)


class PngError(ValueError):
    """The bytes are not a PNG this codec supports."""


@dataclass(frozen=True)
class Image:
    """Decoded pixels, row-major, ``channels`` bytes per pixel (3 = RGB, 4 = RGBA)."""

    width: int
    height: int
    channels: int
    pixels: bytes

    def rgb(self, x: int, y: int) -> tuple[int, int, int]:
        """The RGB value of one pixel (alpha ignored)."""
        at = (y * self.width + x) * self.channels
        return self.pixels[at], self.pixels[at + 1], self.pixels[at + 2]


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode(
    width: int, height: int, pixels: bytes, *, alpha: bool = False, filter_type: int = 0
) -> bytes:
    """Encode row-major RGB (or RGBA with ``alpha``) pixels, every row with ``filter_type``."""
    channels = 4 if alpha else 3
    stride = width * channels
    if len(pixels) != stride * height or width <= 0 or height <= 0:
        raise PngError("pixel buffer does not match width x height x channels")
    if filter_type not in range(5):
        raise PngError(f"unknown filter type {filter_type}")
    raw = bytearray()
    previous = bytes(stride)
    for y in range(height):
        row = pixels[y * stride : (y + 1) * stride]
        raw.append(filter_type)
        raw += _filter(filter_type, row, previous, channels)
        previous = row
    header = struct.pack(">IIBBBBB", width, height, 8, 6 if alpha else 2, 0, 0, 0)
    body = _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(bytes(raw)))
    return SIGNATURE + body + _chunk(b"IEND", b"")


def decode(data: bytes, *, max_pixels: int = 4_000_000) -> Image:
    """Decode a PNG in the supported subset; refuse images above ``max_pixels``."""
    if not data.startswith(SIGNATURE):
        raise PngError("not a PNG signature")
    header, idat = _read_chunks(data)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour not in _CHANNELS or interlace != 0:
        raise PngError("only 8-bit, non-interlaced RGB or RGBA PNGs are supported")
    if width == 0 or height == 0 or width * height > max_pixels:
        raise PngError(f"image size {width}x{height} is outside the supported range")
    channels = _CHANNELS[colour]
    raw = _inflate(idat, (width * channels + 1) * height)
    return Image(width, height, channels, _unfilter(raw, width, height, channels))


def _inflate(idat: bytes, expected: int) -> bytes:
    """Inflate at most ``expected`` bytes (what the header declares) plus one.

    A few hundred KiB of IDAT can inflate to gigabytes (a "zip bomb"); ``max_length``
    stops zlib at the declared size, so memory stays at what the header promised, which
    the pixel cap bounds. More data than declared is refused as a corrupt image.
    """
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(idat, expected + 1)
    except zlib.error as exc:
        raise PngError(f"corrupt image data: {exc}") from exc
    if len(raw) > expected or inflater.unconsumed_tail:
        raise PngError("image data inflates beyond the size its header declares")
    return raw


def _read_chunks(data: bytes) -> tuple[bytes, bytes]:
    at, header, idat = len(SIGNATURE), b"", bytearray()
    while at + 8 <= len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        if len(body) != length or len(data) < at + 12 + length:
            raise PngError("truncated chunk")
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        at += 12 + length
    if len(header) != 13 or not idat:
        raise PngError("missing IHDR or IDAT chunk")
    return header, bytes(idat)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _predict(kind: int, left: int, up: int, up_left: int) -> int:
    if kind == 1:
        return left
    if kind == 2:
        return up
    if kind == 3:
        return (left + up) // 2
    return _paeth(left, up, up_left)


def _filter(kind: int, row: bytes, previous: bytes, bpp: int) -> bytes:
    if kind == 0:
        return row
    out = bytearray(len(row))
    for i, value in enumerate(row):
        left = row[i - bpp] if i >= bpp else 0
        up_left = previous[i - bpp] if i >= bpp else 0
        out[i] = (value - _predict(kind, left, previous[i], up_left)) & 0xFF
    return bytes(out)


def _unfilter(raw: bytes, width: int, height: int, bpp: int) -> bytes:
    stride = width * bpp
    if len(raw) != (stride + 1) * height:
        raise PngError("image data has the wrong length")
    out = bytearray()
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, row = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind > 4:
            raise PngError(f"unknown filter type {kind}")
        if kind:
            for i in range(stride):
                left = row[i - bpp] if i >= bpp else 0
                up_left = previous[i - bpp] if i >= bpp else 0
                row[i] = (row[i] + _predict(kind, left, previous[i], up_left)) & 0xFF
        out += row
        previous = row
    return bytes(out)

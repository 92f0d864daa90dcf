"""Deterministic embeddings for the demo models: real features, no randomness, no network.

* text: hashed, signed character 3-grams of the lower-cased text (256 dimensions);
* image: for a PNG this codec can decode (up to a megapixel), a 4x4x4 RGB colour
  histogram plus the mean colour of each cell of a 4x4 grid; for any other bytes, a 64-bin
  byte histogram plus hashed byte bigrams over the first MiB. Both fill fixed slots of
  one 256-dimension vector.

Every vector is L2-normalised, so a dot product is the cosine similarity: an item compared
with itself scores 1.0.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ._png import SIGNATURE, Image, PngError, decode

DIMENSIONS = 256
BYTE_SAMPLE = 1 << 20
_MAX_PNG_BYTES = 32 << 20
_MAX_PNG_PIXELS = 1_000_000  # pure-Python unfiltering: keep decoding under a second or so
_MAX_SAMPLED_PIXELS = 1 << 16
_HIST, _GRID, _BYTES = 0, 64, 112  # slot offsets in the image vector
_BIGRAMS, _BIGRAM_BUCKETS = 176, DIMENSIONS - 176


def normalise(vector: Sequence[float]) -> list[float]:
    """Scale to unit length (the zero vector stays zero)."""
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else [0.0] * len(vector)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Dot product of two unit vectors, i.e. their cosine similarity."""
    return sum(x * y for x, y in zip(a, b, strict=True))


def embed_text(text: str) -> list[float]:
    """Hashed signed character 3-grams of ``text``."""
    padded = f" {' '.join(text.lower().split())} "
    vector = [0.0] * DIMENSIONS
    for i in range(max(1, len(padded) - 2)):
        digest = hashlib.blake2b(padded[i : i + 3].encode(), digest_size=4).digest()
        sign = 1.0 if digest[3] & 1 else -1.0
        vector[int.from_bytes(digest[:2], "big") % DIMENSIONS] += sign
    return normalise(vector)


def embed_file(path: Path) -> list[float]:
    """Embed stored media: pixel features for a supported PNG, byte features otherwise."""
    vector = [0.0] * DIMENSIONS
    image = _try_png(path)
    if image is not None:
        vector[_HIST:_GRID] = normalise(_colour_histogram(image))
        vector[_GRID:_BYTES] = normalise(_grid_means(image))
    else:
        with path.open("rb") as handle:
            sample = handle.read(BYTE_SAMPLE)
        vector[_BYTES:_BIGRAMS] = normalise(_byte_histogram(sample))
        vector[_BIGRAMS:] = normalise(_byte_bigrams(sample))
    return normalise(vector)


def _try_png(path: Path) -> Image | None:
    with path.open("rb") as handle:
        if handle.read(len(SIGNATURE)) != SIGNATURE or path.stat().st_size > _MAX_PNG_BYTES:
            return None
        data = SIGNATURE + handle.read()
    try:
        return decode(data, max_pixels=_MAX_PNG_PIXELS)
    except PngError:
        return None


def _sample(image: Image) -> list[tuple[int, int]]:
    count = image.width * image.height
    step = max(1, math.isqrt(count // _MAX_SAMPLED_PIXELS))
    return [(x, y) for y in range(0, image.height, step) for x in range(0, image.width, step)]


def _colour_histogram(image: Image) -> list[float]:
    bins = [0.0] * 64
    for x, y in _sample(image):
        r, g, b = image.rgb(x, y)
        bins[(r >> 6) * 16 + (g >> 6) * 4 + (b >> 6)] += 1
    return bins


def _grid_means(image: Image) -> list[float]:
    sums = [0.0] * 48
    counts = [0] * 16
    for x, y in _sample(image):
        cell = (y * 4 // image.height) * 4 + x * 4 // image.width
        counts[cell] += 1
        for channel, value in enumerate(image.rgb(x, y)):
            sums[cell * 3 + channel] += value / 255
    return [sums[i] / max(1, counts[i // 3]) for i in range(48)]


def _byte_histogram(data: bytes) -> list[float]:
    bins = [0.0] * 64
    for value, count in Counter(data).items():
        bins[value >> 2] += count
    return bins


def _byte_bigrams(data: bytes) -> list[float]:
    bins = [0.0] * _BIGRAM_BUCKETS
    for (a, b), count in Counter(itertools.pairwise(data)).items():
        bins[(a * 257 + b) % _BIGRAM_BUCKETS] += count
    return bins

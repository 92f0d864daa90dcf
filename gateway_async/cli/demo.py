"""``gateway-async demo``: the main job end to end, with no configuration and no network.

It starts the emulator in this process, draws 48 sample PNGs (8 colours x 6 patterns, with
the emulator's stdlib PNG encoder), indexes them into scope ``demo`` with a progress bar,
searches with one of them (it comes back first, score ~1.0), and prints wallet and usage.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import Gateway
from .commands import drain, progress_events, summary_lines
from .output import Progress, dump_json, print_table

__all__ = ["COLOURS", "PATTERNS", "QUERY", "run_demo", "sample_images"]

SIZE = 64
MODEL, SCOPE = "demo-image-embed", "demo"
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (240, 140, 20),
    "yellow": (235, 215, 40),
    "green": (40, 170, 60),
    "teal": (20, 160, 160),
    "blue": (40, 80, 220),
    "purple": (140, 50, 200),
    "pink": (240, 110, 180),
}
PATTERNS = ("solid", "stripes", "bars", "checker", "gradient", "ring")
QUERY = "blue-checker.png"
_PAPER = (250, 250, 250)


def _pixel(pattern: str, x: int, y: int, colour: tuple[int, int, int]) -> tuple[int, ...]:
    if pattern == "gradient":
        t = (x + y) / (2 * (SIZE - 1))
        return tuple(round(c * t + p * (1 - t)) for c, p in zip(colour, _PAPER, strict=True))
    centre = (SIZE - 1) / 2
    on = {
        "solid": True,
        "stripes": (y // 16) % 2 == 0,
        "bars": (x // 16) % 2 == 0,
        "checker": (x // 16 + y // 16) % 2 == 0,
        "ring": 12 <= math.hypot(x - centre, y - centre) < 26,
    }[pattern]
    return colour if on else _PAPER


def _png(pattern: str, colour: tuple[int, int, int]) -> bytes:
    from ..emulator._png import encode

    pixels = bytes(
        channel
        for y in range(SIZE)
        for x in range(SIZE)
        for channel in _pixel(pattern, x, y, colour)
    )
    return encode(SIZE, SIZE, pixels)


def sample_images(folder: Path) -> list[Path]:
    """The 48 sample PNGs in ``folder``, drawn where missing (the drawing is deterministic)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for pattern in PATTERNS:
        for name, colour in COLOURS.items():
            path = folder / f"{name}-{pattern}.png"
            if not path.exists():
                path.write_bytes(_png(pattern, colour))
            paths.append(path)
    return paths


@contextlib.contextmanager
def _media_folder(given: str | None) -> Iterator[Path]:
    if given:
        yield Path(given)
        return
    with tempfile.TemporaryDirectory(prefix="gateway-demo-") as tmp:
        yield Path(tmp)


def _metadata(source: Any) -> dict[str, Any]:
    return {"metadata": {"file": Path(source).name}}


async def run_demo(args: argparse.Namespace) -> int:
    from ..emulator import Emulator

    with _media_folder(args.media) as folder:
        images = sample_images(folder)
        async with Emulator(port=0) as emu:
            if not args.json:
                print(f"gateway-async demo: an emulator is running in-process at {emu.base_url}")
                print(f"{len(images)} sample images (8 colours x 6 patterns) in {folder}\n")
            async with Gateway(api_key=emu.api_key, base_url=emu.base_url) as gw:
                await _index_and_search(gw, images, as_json=args.json)
    return 0


async def _index_and_search(gw: Gateway, images: list[Path], *, as_json: bool) -> None:
    """Index, search, show the bill; ``as_json``: JSON lines (items, summary, matches,
    wallet and usage) instead of tables."""
    progress = Progress(f"indexing into {SCOPE!r}", total=len(images), enabled=not as_json)
    ingest = gw.ingest(
        images, model=MODEL, scope=SCOPE, params=_metadata, on_event=progress_events(progress)
    )
    summary = await drain(ingest, progress, as_json)
    if as_json:
        dump_json({"summary": summary}, indent=None)
    else:
        print("\n".join(summary_lines(summary)))

    query = next(p for p in images if p.name == QUERY)
    matches = await _search(gw, query)
    wallet = await gw.billing.wallet()
    usage = await gw.billing.usage_summary()
    if as_json:
        dump_json({"query": query.name, "matches": matches}, indent=None)
        dump_json({"wallet": wallet, "usage": usage}, indent=None)
        return
    print(f"\nsearch {MODEL}/{SCOPE} for images like {query.name}:")
    rows = [
        (rank, f"{m['score']:.4f}", (m.get("metadata") or {}).get("file"), m["media_ref"])
        for rank, m in enumerate(matches, 1)
    ]
    print_table(["#", "score", "file", "media_ref"], rows)
    print(f"\nwallet: {wallet.balance} {wallet.currency}")
    print(f"usage: {usage.total_runs} runs, {usage.total_credits} credits")
    print_table(
        ["model", "runs", "credits"], [(m.model, m.runs, m.credits) for m in usage.by_model]
    )


async def _search(gw: Gateway, query: Path) -> list[Any]:
    """The top 5 matches of ``query`` (uploaded for the search) in the demo scope."""
    ref = await gw.media.upload(query)
    run = await gw.runs.create(
        model=MODEL, mode="search", scope=SCOPE, input={"image": ref}, params={"top_k": 5}
    )
    matches: list[Any] = run.output["matches"]
    return matches

"""Every ```python block of README.md and docs/*.md runs as written, against the emulator.

A block runs as a program (``python -W error block.py``) in a folder holding the sample
files the docs name (``cat.png``, ``photos/``, ...), with ``GATEWAY_API_KEY`` and
``GATEWAY_BASE_URL`` pointing at a fresh emulator. A comment on the line before the fence
says otherwise (and is the only way to):

- ``<!-- doc-test: pytest -->``: the block is a test module; pytest runs it with the
  ``gateway_async.testing`` plugin.
- ``<!-- doc-test: async-body -->``: the block is the body of ``async def main(gw)``,
  ``gw`` a ``Gateway()`` configured by the environment (what ``python -m asyncio`` with a
  client at hand would run).
- ``<!-- doc-test: fragment: why -->``: not runnable on purpose (a signature, a Ray
  cluster); reported as skipped with the reason.

A line's ``# prints: TEXT`` comment is checked: TEXT must appear in what the block printed,
so the numbers a doc shows are the ones it gives.

A failure names the file, the block's line and its output, so whoever edits a doc can fix it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import textwrap
from pathlib import Path

import attrs
import pytest

from gateway_async import testing
from gateway_async.cli.demo import sample_images
from gateway_async.emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\s*$")
PRINTS = re.compile(r"#\s*prints:\s*(.+?)\s*$", re.MULTILINE)
MARKER = re.compile(r"^<!--\s*doc-test:\s*([a-z-]+)\s*(?::\s*(.*?))?\s*-->\s*$")
KINDS = ("program", "pytest", "async-body", "fragment")
DEADLINE = 120  # seconds per block: a hung snippet fails instead of stalling the suite

gateway_emulator = testing.gateway_emulator


@attrs.frozen
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    code: str
    kind: str
    reason: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    """The python blocks of one Markdown file, each with the marker above its fence."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    for number, line in enumerate(lines):
        if not FENCE.match(line):
            continue
        end = next(i for i in range(number + 1, len(lines)) if lines[i].startswith("```"))
        marker = MARKER.match(lines[number - 1]) if number else None
        kind, reason = (marker[1], marker[2] or "") if marker else ("program", "")
        code = "\n".join(lines[number + 1 : end]) + "\n"
        found.append(Block(path, number + 1, code, kind, reason))
    return found


BLOCKS = [block for path in DOCS for block in blocks_of(path)]


def test_every_marker_is_known() -> None:
    """A misspelt marker would silently run (or skip) a block the wrong way."""
    wrong = [f"{b.name}: {b.kind!r}" for b in BLOCKS if b.kind not in KINDS]
    assert not wrong, f"unknown doc-test marker (use one of {KINDS}): {wrong}"
    unexplained = [b.name for b in BLOCKS if b.kind == "fragment" and not b.reason]
    assert not unexplained, f"say why (doc-test: fragment: why): {unexplained}"


def _workdir(tmp: Path) -> Path:
    """The files the docs name, as a reader would have them."""
    images = sample_images(tmp / "photos")
    for name, image in (("cat.png", 0), ("dog.png", 1), ("scan.tiff", 2), ("scan-0042.tiff", 3)):
        shutil.copyfile(images[image], tmp / name)
    return tmp


def _program(block: Block, folder: Path) -> list[str]:
    if block.kind == "pytest":
        (folder / "conftest.py").write_text('pytest_plugins = ["gateway_async.testing"]\n')
        (folder / "test_doc_block.py").write_text(block.code)
        return ["-W", "error", "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_doc_block.py"]
    code = block.code
    if block.kind == "async-body":
        code = (
            "import asyncio\nfrom gateway_async import Gateway\n\n"
            "async def main(gw: Gateway) -> None:\n"
            + textwrap.indent(code, "    ")
            + "\n\nasync def client() -> None:\n    async with Gateway() as gw:\n"
            "        await main(gw)\n\nasyncio.run(client())\n"
        )
    (folder / "doc_block.py").write_text(code)
    return ["-W", "error", "doc_block.py"]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
async def test_doc_block_runs(block: Block, gateway_emulator: Emulator, tmp_path: Path) -> None:
    if block.kind == "fragment":
        pytest.skip(f"{block.name} is marked a fragment: {block.reason}")
    folder = _workdir(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {
        "GATEWAY_API_KEY": gateway_emulator.api_key,
        "GATEWAY_BASE_URL": gateway_emulator.base_url,
        "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *_program(block, folder),
        cwd=folder,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(DEADLINE):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, (
        f"the python block at {block.name} fails as written (exit {proc.returncode}); fix the "
        f"block, or mark it '<!-- doc-test: fragment: why -->' on the line above its fence.\n"
        f"--- block ---\n{block.code}--- output ---\n{out.decode(errors='replace')[-4000:]}"
    )
    printed = out.decode(errors="replace")
    wrong = [claim for claim in PRINTS.findall(block.code) if claim not in printed]
    assert not wrong, (
        f"the python block at {block.name} says '# prints: {wrong[0]}' but printed:\n{printed}"
    )

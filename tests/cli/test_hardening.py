"""Breaks an adversarial review found in the CLI, each pinned by the test that found it."""

from __future__ import annotations

from pathlib import Path

from gateway_async.cli.commands import collect_files
from gateway_async.emulator import Emulator

from .conftest import Cli


def _media(folder: Path, n: int) -> None:
    for i in range(n):
        (folder / f"{i}.png").write_bytes(f"image {i}".encode() * 20)


async def test_a_journal_inside_the_folder_is_never_indexed(
    emu: Emulator, cli: Cli, tmp_path: Path
) -> None:
    """``index DIR --journal DIR/j.db``: the rerun of unchanged files spends nothing; the
    journal changed by the first run is not taken as new media."""
    _media(tmp_path, 3)
    args = ("index", str(tmp_path), "--model", "demo-image-embed", "--scope", "s")
    first = await cli(*args, "--journal", str(tmp_path / "j.db"))
    spent, uploads = emu.stats.charged_total, emu.stats.uploads_initiated
    again = await cli(*args, "--journal", str(tmp_path / "j.db"))
    assert (first.code, again.code) == (0, 0), again.err
    assert "0 indexed, 3 already done, 0 failed (of 3)" in again.out
    assert (emu.stats.charged_total, emu.stats.uploads_initiated) == (spent, uploads)
    assert emu.stats.index_size("demo-image-embed", "s") == 3


async def test_upload_never_takes_its_journal(emu: Emulator, cli: Cli, tmp_path: Path) -> None:
    """``upload DIR --journal DIR/j.db``: a rerun uploads nothing, the journal included."""
    _media(tmp_path, 2)
    first = await cli("upload", str(tmp_path), "--journal", str(tmp_path / "j.db"), "--json")
    uploads = emu.stats.uploads_initiated
    again = await cli("upload", str(tmp_path), "--journal", str(tmp_path / "j.db"), "--json")
    assert (first.code, again.code) == (0, 0), again.err
    assert [Path(line["source"]).name for line in again.json_lines()] == ["0.png", "1.png"]
    assert emu.stats.uploads_initiated == uploads == 2


def test_collect_files_leaves_out_the_journal_and_every_side_file(tmp_path: Path) -> None:
    """The journal, SQLite's -wal, -shm and -journal files and an old version's .lock,
    however the journal is named (through a symlinked folder), are never sources."""
    _media(tmp_path, 1)
    side = ("j.db", "j.db.lock", "j.db-wal", "j.db-shm", "j.db-journal", "j.dbx")
    for name in side:
        (tmp_path / name).write_bytes(b"journal")
    (tmp_path.parent / f"{tmp_path.name}-link").symlink_to(tmp_path)
    via_link = str(tmp_path.parent / f"{tmp_path.name}-link" / "j.db")
    for journal in (str(tmp_path / "j.db"), via_link):
        files, _ = collect_files([str(tmp_path)], "*", journal)
        assert sorted(path.name for path in files) == ["0.png", "j.dbx"]
    explicit, _ = collect_files([str(tmp_path / "j.db"), str(tmp_path / "0.png")], "*", via_link)
    assert [path.name for path in explicit] == ["0.png"]
    assert len(collect_files([str(tmp_path)])[0]) == len(side) + 1  # no journal: all of them

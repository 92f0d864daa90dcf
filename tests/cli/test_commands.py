"""Every ``gateway-async`` command through its entry point, against a running emulator."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from gateway_async.emulator import Emulator

from .conftest import Cli, clean_env, run_cli


async def test_a_missing_key_and_url_are_named_in_one_line() -> None:
    """No flags, no environment: exit 2 with one line saying what is missing."""
    result = await run_cli("wallet", env=clean_env())
    assert result.code == 2
    assert result.out == ""
    assert result.err.splitlines() == [
        "gateway-async: error: missing API key (--api-key or GATEWAY_API_KEY) "
        "and Gateway URL (--base-url or GATEWAY_BASE_URL)"
    ]


async def test_flags_win_over_the_environment(emu: Emulator, cli: Cli) -> None:
    """--api-key beats GATEWAY_API_KEY: a wrong flag fails with the 401 line, exit 1."""
    result = await cli("--api-key", "wrong-key", "wallet")
    assert result.code == 1
    assert len(result.err.splitlines()) == 1
    assert result.err.startswith("gateway-async: error: 401 unauthorized")
    assert "Traceback" not in result.err


async def test_models_list_and_show(cli: Cli) -> None:
    """models list (table and JSON), models show, and a 404 for an unknown slug."""
    table = await cli("models", "list")
    listed = await cli("models", "list", "--q", "embed", "--json")
    shown = await cli("models", "show", "demo-echo", "--json")
    missing = await cli("models", "show", "no-such-model")
    assert table.code == 0
    assert "demo-image-embed" in table.out
    assert {"demo-text-embed", "demo-image-embed"} == {m["slug"] for m in listed.json()}
    assert (shown.json()["slug"], shown.json()["price_per_run"]) == ("demo-echo", "0.0010")
    assert (missing.code, len(missing.err.splitlines())) == (1, 1)
    assert "404" in missing.err


async def test_run_prints_the_run_and_fails_on_a_failed_run(cli: Cli) -> None:
    """run --json gives the Run; a failed run exits 1; bad JSON input is a usage error."""
    ok = await cli("--json", "run", "demo-echo", "--input", '{"hello": "world"}')
    failed = await cli("run", "demo-echo", "--input", "{}", "--params", '{"fail": "nope"}')
    bad = await cli("run", "demo-echo", "--input", "{not json")
    assert ok.code == 0
    assert (ok.json()["output"], ok.json()["status"]) == ({"hello": "world"}, "succeeded")
    assert failed.code == 1
    assert "nope" in failed.err
    assert bad.code == 2
    assert "--input: not valid JSON" in bad.err


async def test_wallet_and_usage(cli: Cli) -> None:
    """wallet and usage, human and JSON; a bad --start is a usage error."""
    await cli("run", "demo-echo", "--input", "{}")
    wallet = await cli("wallet", "--json")
    human = await cli("wallet")
    usage = await cli("usage", "--json", "--start", "2000-01-01T00:00:00Z")
    bad = await cli("usage", "--start", "yesterday")
    assert Decimal("99.9990") == Decimal(wallet.json()["balance"])
    assert human.out.startswith("99.9990 credits")
    assert (usage.json()["total_runs"], usage.json()["total_credits"]) == (1, "0.0010")
    assert bad.code == 2


async def test_verbose_logs_requests_but_never_the_key(emu: Emulator, cli: Cli) -> None:
    """-v shows debug logs on stderr; the API key is masked."""
    result = await cli("-v", "wallet", "--api-key", emu.api_key)
    assert result.code == 0
    assert "GET /api/billing/wallet -> 200" in result.err
    assert emu.api_key not in result.err


async def test_emulator_command_delegates(cli: Cli) -> None:
    """``emulator --help`` is the emulator's own help."""
    result = await cli("emulator", "--help")
    assert result.code == 0
    assert "--port" in result.out


async def test_text_search(cli: Cli) -> None:
    """Index text with run, then search it with --text."""
    for text in ("red apples", "blue ocean", "green forest"):
        body = f'{{"text": "{text}"}}'
        await cli("run", "demo-text-embed", "--mode", "index", "--scope", "t", "--input", body)
    result = await cli(
        "search", "--model", "demo-text-embed", "--scope", "t", "--text", "blue ocean", "--json"
    )
    matches = result.json()["output"]["matches"]
    assert result.code == 0
    assert len(matches) == 3
    assert matches[0]["score"] > 0.99


async def test_upload_files_and_directories(emu: Emulator, cli: Cli, tmp_path: Path) -> None:
    """upload walks directories, prints JSON lines, and uploads every file once."""
    (tmp_path / "sub").mkdir()
    for name in ("a.bin", "sub/b.bin", "sub/c.txt"):
        (tmp_path / name).write_bytes(name.encode())
    result = await cli("upload", str(tmp_path), "--glob", "*.bin", "--json")
    lines = result.json_lines()
    assert result.code == 0
    assert [str(tmp_path / "a.bin"), str(tmp_path / "sub/b.bin")] == [x["source"] for x in lines]
    assert all(line["result"]["media_ref"] for line in lines)
    assert emu.stats.uploads_completed == 2
    missing = await cli("upload", str(tmp_path / "nope"))
    assert (missing.code, len(missing.err.splitlines())) == (1, 1)


async def test_index_with_journal_and_spend_cap(emu: Emulator, cli: Cli, tmp_path: Path) -> None:
    """index: JSON lines then a summary; a rerun skips all; a spend cap stops early."""
    folder = tmp_path / "files"
    folder.mkdir()
    for i in range(12):
        (folder / f"{i:02d}.bin").write_bytes(f"file {i}".encode())
    journal = str(tmp_path / "j.db")
    args = ("index", str(folder), "--model", "demo-image-embed", "--scope", "s")
    first = await cli(*args, "--journal", journal, "--json")
    again = await cli(*args, "--journal", journal)
    capped = await cli(*args[:-1], "capped", "--max-spend", "0.005")
    lines = first.json_lines()
    assert first.code == 0
    assert sum(1 for line in lines[:-1] if line["ok"]) == 12
    assert lines[-1]["summary"]["succeeded"] == 12
    assert again.code == 0
    assert "0 indexed, 12 already done" in again.out
    assert capped.code == 1
    assert "spend cap" in capped.out
    assert emu.stats.index_size("demo-image-embed", "capped") == 5


async def test_search_with_a_file_finds_itself_first(cli: Cli, tmp_path: Path) -> None:
    """search --file uploads the file and lists the matches, itself first."""
    for i in range(5):
        (tmp_path / f"{i}.bin").write_bytes(bytes(range(i, 200 + i)) * (i + 1))
    await cli("index", str(tmp_path), "--model", "demo-image-embed", "--scope", "img")
    result = await cli(
        "search", "--model", "demo-image-embed", "--scope", "img", "--file", str(tmp_path / "3.bin")
    )
    first = result.out.splitlines()[2].split()
    assert result.code == 0
    assert (first[0], first[1]) == ("1", "1.0000")
    assert str(tmp_path / "3.bin") in result.out


async def test_demo_indexes_and_finds_the_query_first(tmp_path: Path) -> None:
    """The demo needs no configuration and prints the query's own image first."""
    result = await run_cli("demo", "--media", str(tmp_path), env=clean_env())
    assert result.code == 0, result.err
    assert len(pngs(tmp_path)) == 48
    assert "48 indexed, 0 already done, 0 failed (of 48)" in result.out
    first = next(line for line in result.out.splitlines() if line.startswith("1 "))
    assert "1.0000" in first
    assert "blue-checker.png" in first
    assert "wallet: 99.9510 credits" in result.out


def pngs(folder: Path) -> list[Path]:
    return list(folder.glob("*.png"))

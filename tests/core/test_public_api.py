"""The public face: what ``import gateway_async`` exports, and what it must not load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gateway_async


def test_all_is_sorted_and_every_name_exists() -> None:
    """__all__ is sorted (constants first, as ruff sorts) and each name resolves."""
    names = list(gateway_async.__all__)
    assert sorted(names, key=lambda n: (not n.isupper(), n)) == names
    for name in names:
        assert hasattr(gateway_async, name), name


def test_fixed_names_are_public() -> None:
    """The names the issue fixes are importable from the package root."""
    from gateway_async import Gateway, GatewayError, RunRequest  # noqa: F401


def test_import_loads_no_cli_emulator_or_test_modules() -> None:
    """A bare import stays light: no CLI, emulator, testing or test-framework modules."""
    code = (
        "import sys, gateway_async; "
        "print(','.join(m for m in sys.modules if m.startswith(('gateway_async.cli', "
        "'gateway_async.emulator', 'gateway_async.testing', 'pytest', 'aioresponses', 'rich'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# What `import gateway_async` must leave for the first call that needs it: the converter's
# cattrs, the upload machinery (its threads, aiofiles, the multipart journal's sqlite3), the
# pipeline. Each is imported on first use (issue 25: import within 1.10 x `import aiohttp`).
DEFERRED = (
    "cattrs",
    "sqlite3",
    "aiofiles",
    "concurrent.futures.thread",
    "gateway_async._upload",
    "gateway_async.resources.media",
    "gateway_async.pipeline",
    "gateway_async._pipeline",
    "gateway_async._journal",
)


def _loaded_after(code: str, deferred: tuple[str, ...] = DEFERRED) -> list[str]:
    """The ``deferred`` modules a fresh interpreter has loaded after running ``code``."""
    probe = (
        f"import sys\n{code}\nprint(','.join(m for m in sys.modules if m.startswith({deferred!r})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_import_defers_what_only_a_call_needs() -> None:
    """A bare import, and a Gateway built and closed without a call, load none of them
    (nor, on import, OpenTelemetry: the first Gateway imports it when installed)."""
    assert _loaded_after("import gateway_async", (*DEFERRED, "opentelemetry")) == []
    closed = (
        "import asyncio, gateway_async\n"
        "async def main():\n"
        "    async with gateway_async.Gateway(api_key='k', base_url='http://127.0.0.1:9'):\n"
        "        pass\n"
        "asyncio.run(main())"
    )
    assert _loaded_after(closed) == []


def test_deferred_names_load_on_first_use() -> None:
    """`from gateway_async import X` works for every public name, lazy ones included, in a
    fresh process; the upload machinery arrives with `gw.media`, not before."""
    names = ", ".join(gateway_async.__all__)
    assert "gateway_async._upload.engine" in _loaded_after(f"from gateway_async import {names}")
    media = (
        "import gateway_async\n"
        "gw = gateway_async.Gateway(api_key='k', base_url='http://127.0.0.1:9')\n"
        "assert type(gw.media).__name__ == 'Media' and gw.media is gw.media"
    )
    loaded = _loaded_after(media)
    assert "gateway_async.resources.media" in loaded
    assert "cattrs" not in loaded  # the converter waits for the first answer


def test_a_usual_run_needs_no_converter() -> None:
    """A process whose runs all have the usual answer, failed or not, never imports cattrs
    (the Run is built by hand); an unusual one (credits as a JSON integer, which the
    converter takes) imports it then."""
    server = (
        "import asyncio, json, gateway_async\n"
        "from aiohttp import web\n"
        "RUN = {'id': 'r', 'model': 'm', 'mode': 'execute', 'status': 'succeeded',\n"
        "       'output': 1, 'usage': {'credits': '0.0010', 'duration_ms': 1},\n"
        "       'created_at': '2026-11-24T12:00:00Z'}\n"
        "async def runs(request):\n"
        "    body = await request.json()\n"
        "    odd = {'usage': {'credits': 1, 'duration_ms': 1}} if body['input'] else {}\n"
        "    return web.json_response({**RUN, **odd})\n"
        "async def main(odd):\n"
        "    app = web.Application(); app.router.add_post('/api/runs', runs)\n"
        "    runner = web.AppRunner(app); await runner.setup()\n"
        "    site = web.TCPSite(runner, '127.0.0.1', 0); await site.start()\n"
        "    url = 'http://127.0.0.1:%d' % runner.addresses[0][1]\n"
        "    async with gateway_async.Gateway(api_key='k', base_url=url) as gw:\n"
        "        await gw.runs.create(model='m', input={})\n"
        "        if odd:\n"
        "            await gw.runs.create(model='m', input={'odd': 1})\n"
        "    await runner.cleanup()\n"
    )
    assert _loaded_after(server + "asyncio.run(main(False))", ("cattrs",)) == []
    assert "cattrs" in _loaded_after(server + "asyncio.run(main(True))", ("cattrs",))


def test_usual_answers_of_every_kind_need_no_converter(tmp_path: Path) -> None:
    """Uploads (one PUT and multipart), the wallet, usage, the marketplace and a run,
    against the emulator in the same process: every answer is usual, none imports cattrs
    (``_fast`` builds them); the converter is for answers out of the usual form."""
    calls = (
        "import asyncio, os, sys\n"
        "from datetime import UTC, datetime, timedelta\n"
        "from gateway_async.emulator import Emulator\n"
        f"small, big = {str(tmp_path / 'a.txt')!r}, {str(tmp_path / 'b.bin')!r}\n"
        "open(small, 'wb').write(b'hello'); open(big, 'wb').write(os.urandom(11 << 20))\n"
        "part = 5 << 20\n"
        "async def main():\n"
        "    async with Emulator(multipart_threshold=part, multipart_part_size=part) as emu:\n"
        "        async with emu.client() as gw:\n"
        "            await gw.media.upload(small)\n"
        "            assert (await gw.media.upload(big)).size == 11 << 20\n"
        "            await gw.billing.wallet()\n"
        "            now = datetime.now(UTC)\n"
        "            await gw.billing.usage_summary(now - timedelta(days=1), now)\n"
        "            assert [m async for m in gw.marketplace.list_models()]\n"
        "            await gw.marketplace.get_model('demo-echo')\n"
        "            await gw.runs.create(model='demo-echo', input={'text': 'hi'})\n"
        "asyncio.run(main())"
    )
    assert _loaded_after(calls, ("cattrs",)) == []


def test_version_is_a_string() -> None:
    """__version__ is exposed for bug reports and the User-Agent."""
    assert isinstance(gateway_async.__version__, str)
    assert gateway_async.__version__.count(".") == 2

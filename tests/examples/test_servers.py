"""The web backends under their real servers, driven by the curl commands they document:
an upload of a real PNG streamed through to storage, then a search that finds it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway_async.cli.demo import sample_images
from gateway_async.emulator import Emulator

from .conftest import curl_commands, example_env, free_port, start

SERVERS = {
    "fastapi_backend": lambda port: (
        "-m", "uvicorn", "examples.fastapi_backend:app", "--port", str(port), "--no-access-log"
    ),
    "aiohttp_backend": lambda port: (
        "-m", "aiohttp.web", "-H", "127.0.0.1", "-P", str(port),
        "examples.aiohttp_backend:create_app",
    ),
}  # fmt: skip
READY = r"(Uvicorn running|Running) on http://\S+:\d+"


async def post(url: str, header: tuple[str, str], body: bytes) -> tuple[int, Any]:
    """What ``curl --data-binary @file -H 'Header: value' url`` sends."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=dict([header])) as response,
    ):
        return response.status, await response.json()


def documented(module: str, port: int) -> dict[str, tuple[tuple[str, str], str]]:
    """The docstring's curl commands by path, aimed at ``port`` on loopback."""
    commands = {}
    for header, value, url in curl_commands(module):
        path = url.split("/", 1)[1].split("?")[0]
        commands[path] = (
            (header, value),
            "http://" + url.replace("localhost:8000", f"127.0.0.1:{port}"),
        )
    return commands


@pytest.mark.parametrize("module", sorted(SERVERS))
async def test_backend_indexes_an_image_and_finds_it(
    module: str, emu: Emulator, tmp_path: Path
) -> None:
    """The documented curl session, under uvicorn / aiohttp.web, against the emulator."""
    images = sample_images(tmp_path)
    cat, other = images[9].read_bytes(), images[30].read_bytes()
    port = free_port()
    argv = (sys.executable, *SERVERS[module](port))
    async with start(*argv, env=example_env(emu)) as server:
        await server.wait_for(READY)
        curl = documented(module, port)
        header, images_url = curl["images"]
        _, search_url = curl["search"]
        indexed = [await post(images_url, header, body) for body in (other, cat)]
        status, matches = await post(search_url, header, cat)
    assert [code for code, _ in indexed] == [200, 200], (indexed, server.output)
    assert status == 200, server.output
    assert matches[0]["media_ref"] == indexed[1][1]["media_ref"]
    assert matches[0]["score"] > 0.999
    assert emu.media_path(indexed[1][1]["media_ref"]).read_bytes() == cat
    assert "Traceback" not in server.output


async def test_backend_refuses_a_body_without_content_length(emu: Emulator) -> None:
    """A chunked body (no Content-Length) is a 400 naming the header, not a 500."""
    port = free_port()
    argv = (sys.executable, *SERVERS["fastapi_backend"](port))
    async with start(*argv, env=example_env(emu)) as server:
        await server.wait_for(READY)

        async def chunks() -> Any:
            yield b"not sized"

        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{port}/images?scope=s", data=chunks()) as response,
        ):
            status, body = response.status, await response.json()
    assert (status, body) == (400, {"error": "send a Content-Length header"})

"""The hand probes of issue 13, kept as regression tests: input the emulator cannot serve
gets a 4xx envelope (never a bare 500), nothing is charged for an answer that was not
given, stored data can always be sent back, PNGs decode within their declared size, and
times keep four-digit years."""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway_async.emulator import Emulator
from gateway_async.emulator import _runs as runs_module
from gateway_async.emulator._db import Db
from gateway_async.emulator._embed import embed_file
from gateway_async.emulator._png import SIGNATURE, PngError, decode

from .conftest import Api

SURROGATE = '"\\ud800"'  # a lone surrogate, as JSON text
DEEP = "[" * 975 + "]" * 975
JSON = {"Content-Type": "application/json"}


def run_body(**fields: str) -> bytes:
    """A demo-echo run body with raw JSON text spliced in for some fields."""
    parts = {"model": '"demo-echo"', "input": "{}", **fields}
    return ("{" + ",".join(f'"{name}":{text}' for name, text in parts.items()) + "}").encode()


def init_body(filename: str) -> bytes:
    return f'{{"filename":{filename},"content_type":"text/plain","size":1}}'.encode()


RUNS, INIT, COMPLETE = "/api/runs", "/api/media/upload/init", "/api/media/upload/complete"
MODELS = "/api/marketplace/models?limit="
GZIP = {**JSON, "Content-Encoding": "gzip"}
LONE_X, LONE_KEY = f'{{"x":{SURROGATE}}}', f"{{{SURROGATE}:1}}"
# (probe, method, path, body, extra headers, status, details.field or None)
PROBES: list[tuple[str, str, str, bytes | None, dict[str, str], int, str | None]] = [
    ("deep JSON, run", "POST", RUNS, run_body(input=DEEP), JSON, 400, None),
    ("deep JSON, init", "POST", INIT, DEEP.encode(), JSON, 400, None),
    ("deep JSON, complete", "POST", COMPLETE, DEEP.encode(), JSON, 400, None),
    ("NaN in input", "POST", RUNS, run_body(input='{"x":NaN}'), JSON, 400, None),
    ("Infinity in input", "POST", RUNS, run_body(input='{"x":-Infinity}'), JSON, 400, None),
    ("1e400 in input", "POST", RUNS, run_body(input='{"x":1e400}'), JSON, 400, None),
    ("surrogate in input", "POST", RUNS, run_body(input=LONE_X), JSON, 422, "input.x"),
    ("surrogate in params", "POST", RUNS, run_body(params=LONE_X), JSON, 422, "params.x"),
    ("surrogate field name", "POST", RUNS, run_body(input=LONE_KEY), JSON, 422, "input.\\ud800"),
    ("surrogate filename", "POST", INIT, init_body(SURROGATE), JSON, 422, "filename"),
    ("gzip, plain body", "POST", RUNS, run_body(), GZIP, 400, None),
    ("limit=²", "GET", MODELS + "%C2%B2", None, {}, 422, "limit"),
    ("4,301-digit limit", "GET", MODELS + "9" * 4301, None, {}, 422, "limit"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "field"),
    [probe[1:] for probe in PROBES],
    ids=[probe[0] for probe in PROBES],
)
async def test_hostile_requests_get_a_4xx_envelope_and_charge_nothing(
    api: Api,
    emu: Emulator,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    field: str | None,
) -> None:
    """Each probe gets its 4xx with the envelope and a request id; nothing is charged."""
    reply = await api.call(method, path, data=body, headers=headers)
    assert (reply.status, reply.headers["Content-Type"]) == (
        status,
        "application/json; charset=utf-8",
    )
    assert reply.headers["X-Request-Id"].startswith("req_")
    assert reply.body["error"]["details"] == ({} if field is None else {"field": field})
    assert (emu.stats.charges, emu.core.state.balance) == (0, Decimal("100.0000"))


async def test_a_refused_run_is_refused_again_on_retry(api: Api, emu: Emulator) -> None:
    """A retry with the same Idempotency-Key is judged afresh and is never charged."""
    key = {**JSON, "Idempotency-Key": "k-surrogate"}
    for _ in range(2):
        body = run_body(input=LONE_X)
        reply = await api.call("POST", "/api/runs", data=body, headers=key)
        assert reply.status == 422
    assert (emu.stats.charges, emu.core.state.usage, emu.core.state.replays) == (0, [], {})


def _fail_once(original: Callable[..., Any]) -> Callable[..., Any]:
    calls = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return original(*args, **kwargs)

    return wrapper


async def test_an_answer_that_cannot_be_built_is_refunded_and_not_stored(
    api: Api, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building the response fails once: 500 with the envelope, nothing charged or stored;
    the retry with the same key executes once and is charged once."""
    monkeypatch.setattr(runs_module, "json_response", _fail_once(runs_module.json_response))
    headers = {"Idempotency-Key": "k-build"}
    failed = await api.post("/api/runs", {"model": "demo-echo", "input": {}}, headers=headers)
    assert (failed.status, failed.body["error"]["code"]) == (500, "internal_error")
    assert failed.headers["X-Request-Id"] in failed.body["error"]["message"]
    assert (emu.core.state.balance, emu.core.state.usage, emu.stats.charges) == (
        Decimal("100.0000"),
        [],
        0,
    )
    retried = await api.post("/api/runs", {"model": "demo-echo", "input": {}}, headers=headers)
    assert retried.status == 200
    assert (emu.core.state.balance, emu.stats.executions_by_idempotency_key["k-build"]) == (
        Decimal("99.9990"),
        1,
    )


async def test_the_charge_lands_only_with_the_stored_reply(
    api: Api, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storing an index run's item fails: its charge and reply roll back with it; the
    retry indexes once and is charged once."""
    original = Db.put

    def put(self: Db, table: str, key: str, value: Any) -> None:
        if table == "vectors":
            raise OSError("disk full")
        original(self, table, key, value)

    monkeypatch.setattr(Db, "put", put)
    body = {"model": "demo-text-embed", "mode": "index", "scope": "s", "input": {"text": "a"}}
    headers = {"Idempotency-Key": "k-disk"}
    assert (await api.post("/api/runs", body, headers=headers)).status == 500
    state = emu.core.state
    assert (state.balance, state.usage, state.replays, emu.stats.charges) == (
        Decimal("100.0000"),
        [],
        {},
        0,
    )
    assert emu.stats.index_size("demo-text-embed", "s") == 0
    assert state.available == Decimal("100.0000")  # the reservation is released
    monkeypatch.undo()
    assert (await api.post("/api/runs", body, headers=headers)).status == 200
    assert (state.balance, emu.stats.index_size("demo-text-embed", "s")) == (Decimal("99.9990"), 1)


async def test_metadata_that_cannot_be_sent_back_does_not_poison_the_scope(
    api: Api, emu: Emulator
) -> None:
    """Index refuses unencodable metadata, so searching the scope keeps working."""
    index = f'{{"metadata":{{"k":{SURROGATE}}}}}'
    body = run_body(model='"demo-text-embed"', mode='"index"', scope='"s"', input='{"text":"a"}')
    refused = await api.call(
        "POST", "/api/runs", data=body[:-1] + f',"params":{index}}}'.encode(), headers=JSON
    )
    assert (refused.status, refused.body["error"]["details"]) == (
        422,
        {"field": "params.metadata.k"},
    )
    ok = await api.run(model="demo-text-embed", mode="index", scope="s", input={"text": "a"})
    assert ok.status == 200
    search = await api.run(model="demo-text-embed", mode="search", scope="s", input={"text": "a"})
    assert (search.status, len(search.body["output"]["matches"])) == (200, 1)
    assert emu.stats.charges == 2


@pytest.mark.parametrize(
    ("query", "field", "echoed"),
    [
        ("start=0333-05-20T00:00:00Z", "start", "0333-05-20T00:00:00Z"),
        ("start=0001-01-01T00:00:00%2B01:00", "start", "0001-01-01T00:00:00Z"),
        ("end=9999-12-31T23:59:59-01:00", "end", "9999-12-31T23:59:59Z"),
        ("end=0001-01-13T12:51:47.250846Z", "start", "0001-01-01T00:00:00Z"),
        ("end=2026-12-31T23:59:60Z", "end", "2026-12-31T23:59:59Z"),
    ],
)
async def test_usage_summary_times_are_rfc3339_at_the_edges(
    api: Api, query: str, field: str, echoed: str
) -> None:
    """Four-digit years, and instants past year 1 or 9999 clamped instead of a 500."""
    reply = await api.get(f"/api/billing/usage/summary?{query}")
    assert (reply.status, reply.body[field]) == (200, echoed)


def png_bomb(width: int, height: int, inflated: int) -> bytes:
    """An RGB PNG whose header says width x height but whose IDAT inflates to ``inflated``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data).to_bytes(4, "big")
        return len(data).to_bytes(4, "big") + kind + data + crc

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    deflate, block = zlib.compressobj(9), bytes(1 << 20)
    idat = b"".join(deflate.compress(block) for _ in range(inflated >> 20)) + deflate.flush()
    return SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_png_decodes_within_its_declared_size(tmp_path: Path) -> None:
    """A 1000x1000 header over 64 MiB of pixel data: refused, peak memory near 3 MB."""
    bomb = png_bomb(1000, 1000, 64 << 20)
    assert len(bomb) < 100_000
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    tracemalloc.start()
    try:
        with pytest.raises(PngError, match="beyond the size its header declares"):
            decode(bomb, max_pixels=1_000_000)
        vector = embed_file(path)  # byte features instead of pixels
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
    assert len(vector) == 256


async def test_gzip_bodies_that_are_gzip_still_work(api: Api) -> None:
    """The gzip probe's fix keeps real compressed bodies working."""
    body = gzip.compress(json.dumps({"model": "demo-echo", "input": {"a": 1}}).encode())
    reply = await api.call(
        "POST", "/api/runs", data=body, headers={**JSON, "Content-Encoding": "gzip"}
    )
    assert (reply.status, reply.body["output"]) == (200, {"a": 1})

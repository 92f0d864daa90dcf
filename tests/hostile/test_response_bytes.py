"""Property: whatever bytes come back, the transport returns a decoded reply or raises a
GatewayError, within the call's deadline; a storage PUT ends in a MediaRef or a
GatewayError that never shows the pre-signed URL's signature (issue #12).

A raw loopback server writes each generated answer (status line, headers, body, or plain
garbage) and closes the connection. Hypothesis is derandomised and bounded, so CI runs the
same examples every time.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import traceback
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
from aiohttp import web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway_async import Gateway, GatewayError, MediaRef, Timeouts
from gateway_async._transport import Reply
from tests.conftest import TEST_KEY, serve_on_loopback
from tests.core.test_transport import RUN
from tests.hostile.raw import RawServer

T = TypeVar("T")
DEADLINE = 3.0  # the call's own total; the harness allows a margin on top
SIGNATURE = "X-Amz-Signature=5ec4e7516e9a7c0ffee"
CRLF = "\r\n"

_header_names = st.sampled_from(
    [
        "Content-Length",
        "Content-Type",
        "Content-Encoding",
        "Transfer-Encoding",
        "Retry-After",
        "Location",
        "X-Request-Id",
        "Idempotent-Replayed",
        "Connection",
    ]
)
_header_values = st.one_of(
    st.sampled_from(
        [
            "0",
            "5",
            "-1",
            "99999999999",
            "chunked",
            "gzip",
            "deflate",
            "br",
            "identity",
            "²",
            "3600",
            "http://[::1",
            "//evil.example/x",
            "/api/runs",
            "true",
            "close",
            "",
        ]
    ),
    st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=30),
)
_bodies = st.one_of(
    st.just(json.dumps(RUN).encode()),
    st.just(b"{}"),
    st.just(b"[" * 200_000),
    st.just(b'{"error": {"code": "x", "message": "y"}}'),
    st.just(gzip.compress(json.dumps(RUN).encode())),
    st.binary(max_size=200),
)


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    """A plausible HTTP answer with hostile parts, or garbage."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    status = draw(st.one_of(st.sampled_from([200, 201, 302, 400, 429, 503]), st.integers(0, 1200)))
    version = draw(st.one_of(st.just("HTTP/1.1"), st.sampled_from(["HTTP/1.0", "HTTP/2", "ICY"])))
    reason = draw(st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=20))
    headers = draw(st.lists(st.tuples(_header_names, _header_values), max_size=4))
    body = draw(_bodies)
    if draw(st.integers(0, 3)):
        headers.append(("Content-Length", str(len(body))))
    lines = [f"{version} {status} {reason}", *(f"{name}: {value}" for name, value in headers)]
    return (CRLF.join([*lines, "", ""])).encode("latin-1") + body


async def within(budget: float, call: Awaitable[T]) -> T | GatewayError:
    """The call's result, or the GatewayError it raised (any other exception propagates),
    after checking that it ended within ``budget`` seconds."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        outcome: T | GatewayError = await asyncio.wait_for(call, budget + 1)
    except GatewayError as exc:
        outcome = exc
    assert loop.time() - started < budget
    return outcome


def client(url: str) -> Gateway:
    return Gateway(
        api_key=TEST_KEY,
        base_url=url,
        max_retries=0,
        timeout=Timeouts(total=DEADLINE, attempt=DEADLINE),
        upload_stall_timeout=DEADLINE,
    )


@pytest.fixture
def loop_runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as runner:
        yield runner


PROPERTY = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def explore(runner: asyncio.Runner, one: Callable[[bytes], Awaitable[T]], *extra: bytes) -> list[T]:
    """``one`` on every generated answer and on ``extra``, on one event loop; the outcomes."""
    seen: list[T] = []

    async def record(answer: bytes) -> None:
        seen.append(await one(answer))

    @PROPERTY
    @given(answers())
    def check(answer: bytes) -> None:
        runner.run(record(answer))

    for answer in extra:
        check = example(answer)(check)
    check()
    assert len(seen) > 100
    return seen


def test_any_answer_is_a_reply_or_a_gateway_error(loop_runner: asyncio.Runner) -> None:
    server = loop_runner.run(RawServer().start())
    gw = client(server.url)

    async def one(answer: bytes) -> Reply | GatewayError:
        server.answer = answer
        call = gw._transport.request("POST", "/api/runs", body={"model": "m"})
        outcome = await within(DEADLINE + 1, call)
        if isinstance(outcome, GatewayError):
            assert TEST_KEY not in f"{outcome} {outcome!r}"
        else:
            assert isinstance(outcome, Reply)
            assert 200 <= outcome.status < 300
        return outcome

    try:
        seen = explore(
            loop_runner,
            one,
            b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + b"[" * 200_000,
            b"HTTP/1.1 abc\r\n\r\n",
            ("HTTP/1.1 200 OK\r\nX: " + "a" * 70_000 + "\r\n\r\n").encode(),
            "HTTP/1.1 429 x\r\nRetry-After: ²\r\nContent-Length: 0\r\n\r\n".encode("latin-1"),
            b"HTTP/1.1 302 x\r\nLocation: http://[::1\r\nContent-Length: 0\r\n\r\n",
        )
    finally:
        loop_runner.run(gw.aclose())
        loop_runner.run(server.close())
    assert any(isinstance(o, Reply) for o in seen), "no example decoded: the generator is off"


def test_any_storage_answer_is_a_media_ref_or_a_gateway_error(
    loop_runner: asyncio.Runner,
) -> None:
    storage = loop_runner.run(RawServer().start())

    async def init(request: web.Request) -> web.StreamResponse:
        ticket = {
            "upload_id": "upl_1",
            "upload_url": f"{storage.url}/bucket/upl_1?X-Amz-Credential=AKIA7&{SIGNATURE}",
            "method": "PUT",
            "headers": {"Content-Type": "application/octet-stream"},
            "expires_at": "2099-01-01T00:00:00Z",
        }
        return web.json_response(ticket, status=201)

    async def complete(request: web.Request) -> web.StreamResponse:
        ref = {"media_ref": "mref_1", "size": 5, "content_type": "application/octet-stream"}
        return web.json_response(ref)

    app = web.Application()
    app.router.add_post("/api/media/upload/init", init)
    app.router.add_post("/api/media/upload/complete", complete)
    api, url = loop_runner.run(serve_on_loopback(app))
    gw = client(url)

    async def one(answer: bytes) -> MediaRef | GatewayError:
        storage.answer = answer
        outcome = await within(2 * DEADLINE + 1, gw.media.upload(b"hello"))
        if isinstance(outcome, GatewayError):
            text = f"{outcome!r} " + "".join(traceback.format_exception(outcome))
            assert "5ec4e7516e9a7c0ffee" not in text
            assert "AKIA7" not in text
        else:
            assert isinstance(outcome, MediaRef)
        return outcome

    try:
        seen = explore(
            loop_runner,
            one,
            f"HTTP/1.1 400 x\r\nContent-Length: 60\r\n\r\n<Error>{SIGNATURE}</Error>".encode(),
            b"garbage\r\n\r\n",
        )
    finally:
        loop_runner.run(gw.aclose())
        loop_runner.run(api.cleanup())
        loop_runner.run(storage.close())
    assert any(isinstance(o, MediaRef) for o in seen), "no upload succeeded: the generator is off"

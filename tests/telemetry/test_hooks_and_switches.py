"""Event hooks (with or without OpenTelemetry), ``telemetry=False``, and no SDK configured."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys

import pytest

from gateway_async import ConfigurationError, Gateway, RequestInfo, ResponseInfo
from tests.conftest import TEST_KEY, FakeServer, no_wait_policy, reply
from tests.core.test_transport import RUN, WALLET
from tests.telemetry.conftest import SIGNATURE, Otel, serve_upload


async def test_sync_and_async_hooks_see_every_attempt(server: FakeServer) -> None:
    server.on("POST", "/api/runs", reply(503, {"error": {"code": "busy"}}), reply(200, RUN))
    serve_upload(server)
    requests: list[RequestInfo] = []
    responses: list[ResponseInfo] = []
    answered = asyncio.Event()

    async def on_response(info: ResponseInfo) -> None:
        await asyncio.sleep(0)  # a real await: the hook is awaited before the call goes on
        responses.append(info)
        answered.set()

    hooks = {"request": [requests.append], "response": [on_response]}
    async with Gateway(
        api_key=TEST_KEY, base_url=server.url, retry=no_wait_policy(), event_hooks=hooks
    ) as gw:
        await gw.runs.create(model="demo-echo", input={"x": 1})
        assert answered.is_set()
        await gw.media.upload(b"hello")

    assert [(r.method, r.attempt) for r in requests[:2]] == [("POST", 1), ("POST", 2)]
    assert [(r.status, r.attempt) for r in responses[:2]] == [(503, 1), (200, 2)]
    first = responses[0]
    assert first.url == f"{server.url}/api/runs"
    assert first.request_id == "req_test"
    assert first.elapsed >= 0
    assert first.headers["X-API-Key"] == "[redacted]"
    assert first.headers["Idempotency-Key"]  # not a secret: shown as sent
    with pytest.raises(TypeError):
        first.headers["X-API-Key"] = "x"  # type: ignore[index]
    put = next(info for info in responses if info.method == "PUT")
    assert put.url == f"{server.url}/bucket/upl_1"
    assert SIGNATURE not in repr(put)
    assert put.request_id is None
    assert [r.method for r in requests] == ["POST", "POST", "POST", "PUT", "POST"]


async def test_a_raising_hook_is_logged_once_and_the_call_goes_on(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.on("GET", "/api/billing/wallet", reply(200, WALLET))
    calls: list[int] = []

    def broken(_: RequestInfo) -> None:
        calls.append(1)
        raise RuntimeError("hook bug")

    async def broken_async(_: ResponseInfo) -> None:
        raise ValueError("async hook bug")

    hooks = {"request": [broken], "response": [broken_async]}
    async with Gateway(api_key=TEST_KEY, base_url=server.url, event_hooks=hooks) as gw:
        for _ in range(3):
            wallet = await gw.billing.wallet()
            assert wallet.workspace_id == "ws_1"
    assert len(calls) == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage().split(" raised ")[1].split(";")[0] for r in warnings] == [
        "RuntimeError",
        "ValueError",
    ]
    assert all(r.name == "gateway_async" for r in warnings)


@pytest.mark.parametrize(
    ("hooks", "field"),
    [
        ({"requests": [print]}, "unknown event 'requests'"),
        ({"request": ["not callable"]}, "event_hooks['request']"),
        ([print], "pass a mapping"),
    ],
)
def test_bad_event_hooks_are_refused_with_the_field(hooks: object, field: str) -> None:
    with pytest.raises(ConfigurationError, match=field.replace("[", r"\[")):
        Gateway(api_key=TEST_KEY, base_url="https://gw.test", event_hooks=hooks)  # type: ignore[arg-type]


async def test_telemetry_false_records_nothing(server: FakeServer, otel: Otel) -> None:
    server.on("POST", "/api/runs", reply(200, RUN))
    async with otel.client(server.url, telemetry=False) as gw:
        assert gw._transport.telemetry is None
        assert gw._storage.telemetry is None
        await gw.runs.create(model="demo-echo", input={"x": 1})
    assert otel.spans() == []
    assert otel.points("gateway.client.request.duration") == []
    assert "traceparent" not in server.seen[0].headers


async def test_hooks_still_run_with_telemetry_false(server: FakeServer, otel: Otel) -> None:
    server.on("GET", "/api/billing/wallet", reply(200, WALLET))
    seen: list[RequestInfo] = []
    hooks = {"response": [seen.append]}
    async with otel.client(server.url, telemetry=False, event_hooks=hooks) as gw:
        await gw.billing.wallet()
    assert [info.attempt for info in seen] == [1]
    assert otel.spans() == []
    assert "traceparent" not in server.seen[0].headers


async def test_without_an_sdk_the_client_stays_uninstrumented(server: FakeServer) -> None:
    """The API installed, no provider configured: nothing is made, nothing is sent."""
    server.on("POST", "/api/runs", reply(200, RUN))
    async with Gateway(api_key=TEST_KEY, base_url=server.url) as gw:
        observer = gw._transport.telemetry
        assert observer is not None
        assert not observer.tracing()
        assert not observer.active()
        await gw.runs.create(model="demo-echo", input={"x": 1})
    assert "traceparent" not in server.seen[0].headers


def test_telemetry_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="telemetry"):
        Gateway(api_key=TEST_KEY, base_url="https://gw.test", telemetry="yes")  # type: ignore[arg-type]


def test_without_opentelemetry_installed_nothing_is_imported() -> None:
    """With the package absent, a client has no telemetry; hooks alone still work."""
    code = """
import sys
sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
from gateway_async import Gateway
gw = Gateway(api_key="k", base_url="https://gw.test")
hooked = Gateway(api_key="k", base_url="https://gw.test", event_hooks={"request": [print]})
print(gw._transport.telemetry is None, hooked._transport.telemetry is not None,
      hooked._transport.telemetry.tracing(),
      any(name.startswith("opentelemetry.") for name in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "False", "False"]


def test_import_gateway_async_does_not_import_opentelemetry() -> None:
    code = "import sys, gateway_async; print('opentelemetry' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_global_provider_set_after_the_client_is_used_from_then_on() -> None:
    """In a fresh process (the global providers can be set once): no SDK, then an SDK."""
    code = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from gateway_async import Gateway
gw = Gateway(api_key="k", base_url="https://gw.test")
before = gw._transport.telemetry.tracing()
trace.set_tracer_provider(TracerProvider())
print(before, gw._transport.telemetry.tracing(), gw._transport.telemetry.active())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True"]

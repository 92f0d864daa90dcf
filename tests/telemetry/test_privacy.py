"""Nothing secret reaches telemetry: not in spans, events, metric attributes, logs or hooks."""

from __future__ import annotations

import logging

import pytest

from gateway_async import RequestInfo, ServerError
from tests.conftest import FakeServer, reply
from tests.core.test_transport import RUN
from tests.telemetry.conftest import Otel, serve_upload

API_KEY = "gk_live_KEYSECRET_5f1d2c3b4a"
ACCESS_TOKEN = "eyJ.TOKENSECRET.9c8b7a"
SIGNATURE = "SIGSECRET_0a1b2c3d"
INPUT = "INPUTSECRET_prompt_text"
PARAM = "PARAMSECRET_value"
OUTPUT = "OUTPUTSECRET_answer"
SECRETS = (API_KEY, ACCESS_TOKEN, SIGNATURE, INPUT, PARAM, OUTPUT)


def recorded_text(otel: Otel) -> list[str]:
    """Every string telemetry recorded: span names, attributes, events, metric attributes."""
    found: list[str] = []
    for span in otel.spans():
        found.append(span.name)
        found += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
        for event in span.events:
            found.append(event.name)
            found += [f"{k}={v}" for k, v in (event.attributes or {}).items()]
        found.append(str(span.status.description))
    data = otel.reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    found += [f"{k}={v}" for k, v in dict(point.attributes).items()]
    return found


async def test_no_secret_in_spans_metrics_logs_or_hooks(
    server: FakeServer, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[RequestInfo] = []
    serve_upload(server, query=f"X-Amz-Credential=c&X-Amz-Signature={SIGNATURE}")
    output_run = {**RUN, "output": {"text": OUTPUT}}
    server.on("POST", "/api/runs", reply(503, {"error": {"code": "busy"}}), reply(200, output_run))
    server.on("GET", "/api/billing/wallet", reply(500, {"error": {"code": "oops"}}))
    hooks = {"request": [seen.append], "response": [seen.append]}

    async with otel.client(server.url, api_key=API_KEY, event_hooks=hooks) as gw:
        media = await gw.media.upload(b"hello")
        await gw.runs.create(
            model="demo-echo", input={"image": media, "prompt": INPUT}, params={"p": PARAM}
        )
    async with otel.client(
        server.url, api_key=None, access_token=ACCESS_TOKEN, event_hooks=hooks, max_retries=0
    ) as gw:
        with pytest.raises(ServerError):
            await gw.billing.wallet()

    # The secrets really were on the wire, so their absence below means something.
    wire = " ".join(f"{s.raw_path} {dict(s.headers)} {s.body!r}" for s in server.seen)
    assert all(secret in wire for secret in (API_KEY, ACCESS_TOKEN, SIGNATURE, INPUT, PARAM))
    assert len(otel.spans()) >= 8
    assert len(seen) == 2 * len(server.seen)
    # Every log line but the loopback server's own access log (the server saw the secrets).
    logged = [r.getMessage() for r in caplog.records if not r.name.startswith("aiohttp.")]
    assert any(r.name == "gateway_async" for r in caplog.records)
    texts = recorded_text(otel) + logged
    texts += [repr(info) for info in seen]
    leaks = [(secret, text) for text in texts for secret in SECRETS if secret in text]
    assert leaks == []
    redacted = [info.headers for info in seen if "X-API-Key" in info.headers]
    assert redacted
    assert {headers["X-API-Key"] for headers in redacted} == {"[redacted]"}
    assert any(info.headers.get("Authorization") == "[redacted]" for info in seen)

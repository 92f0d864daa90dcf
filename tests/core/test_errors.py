"""Non-2xx answers become the right typed error, on the wire and under aioresponses."""

from __future__ import annotations

from typing import Any

import pytest
from aioresponses import aioresponses

from gateway_async import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    Gateway,
    InsufficientFundsError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UnprocessableEntityError,
    UploadExpiredError,
)
from gateway_async._errors import error_from_response
from tests.conftest import TEST_KEY, FakeServer, reply

TABLE: list[tuple[int, str, type[APIStatusError]]] = [
    (400, "bad_request", BadRequestError),
    (401, "unauthorized", AuthenticationError),
    (402, "insufficient_funds", InsufficientFundsError),
    (403, "forbidden", PermissionDeniedError),
    (404, "not_found", NotFoundError),
    (409, "conflict", ConflictError),
    (410, "upload_expired", UploadExpiredError),
    (413, "payload_too_large", PayloadTooLargeError),
    (422, "validation_error", UnprocessableEntityError),
    (429, "rate_limited", RateLimitError),
    (500, "internal_error", ServerError),
    (503, "unavailable", ServerError),
]


def envelope(code: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": f"{code} happened", "details": {"field": "scope"}}}


@pytest.mark.parametrize(("status", "code", "cls"), TABLE)
async def test_status_maps_to_class_on_the_wire(
    server: FakeServer, status: int, code: str, cls: type[APIStatusError]
) -> None:
    """Each contract status becomes its class with code, message, details and request id."""
    server.on("POST", "/api/runs", reply(status, envelope(code), headers={"X-Request-Id": "req_7"}))
    async with Gateway(api_key=TEST_KEY, base_url=server.url, max_retries=0) as gw:
        with pytest.raises(cls) as info:
            await gw.runs.create(model="m", input={})
    err = info.value
    assert (err.status_code, err.code, err.message) == (status, code, f"{code} happened")
    assert err.details == {"field": "scope"}
    assert err.request_id == "req_7"
    assert f"{status} {code}" in str(err)
    assert "req_7" in str(err)


@pytest.mark.parametrize(("status", "code", "cls"), TABLE)
async def test_status_maps_to_class_under_aioresponses(
    status: int, code: str, cls: type[APIStatusError]
) -> None:
    """The same mapping holds with a mocked session (unit level)."""
    with aioresponses() as mocked:
        mocked.get(
            "https://gw.example/api/billing/wallet",
            status=status,
            payload=envelope(code),
            headers={"X-Request-Id": "req_8"},
        )
        async with Gateway(api_key=TEST_KEY, base_url="https://gw.example", max_retries=0) as gw:
            with pytest.raises(cls) as info:
                await gw.billing.wallet()
    assert info.value.code == code
    assert info.value.request_id == "req_8"


async def test_html_502_page_maps_cleanly(server: FakeServer) -> None:
    """A proxy's HTML error page becomes a ServerError with a readable message."""
    page = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"
    server.on("GET", "/api/billing/wallet", reply(502, raw=page))
    async with Gateway(api_key=TEST_KEY, base_url=server.url, max_retries=0) as gw:
        with pytest.raises(ServerError, match="HTML page") as info:
            await gw.billing.wallet()
    assert info.value.status_code == 502
    assert info.value.code == "internal_error"


def test_empty_and_odd_bodies_map_cleanly() -> None:
    """Empty bodies, JSON arrays and envelopes with wrong types still give a clean error."""
    empty = error_from_response(404, b"", reason="Not Found")
    assert isinstance(empty, NotFoundError)
    assert "empty body" in empty.message
    array = error_from_response(422, b"[1,2]")
    assert isinstance(array, UnprocessableEntityError)
    assert array.code == "http_422"
    odd = error_from_response(409, b'{"error": {"code": 5, "message": ["x"], "details": 3}}')
    assert isinstance(odd, ConflictError)
    assert odd.details == {}
    teapot = error_from_response(418, b"{}")
    assert type(teapot) is APIStatusError


def test_errors_never_carry_the_key() -> None:
    """Error texts are built from status and body only: no header can leak into them."""
    err = error_from_response(401, b'{"error": {"code": "unauthorized", "message": "bad key"}}')
    assert TEST_KEY not in str(err)
    assert TEST_KEY not in repr(err)


def test_every_error_survives_pickling() -> None:
    """Errors cross process boundaries (multiprocessing, Ray) with their fields intact."""
    import pickle

    import gateway_async
    import gateway_async as ga

    reason = ga.AuthenticationError("bad key", status_code=401, code="unauthorized")
    made: list[ga.GatewayError] = [
        ga.InvalidRequestError("scope: bad", field="scope"),
        ga.ConfigurationError("no key"),
        ga.NotAttemptedError("skipped", reason=reason),
        ga.APIConnectionError("reset"),
        ga.APITimeoutError("slow"),
        ga.APIResponseValidationError("bad body", status_code=200, request_id="req_1"),
        ga.UploadError("refused", status_code=403, retryable=True),
        ga.RateLimitError(
            "slow down", status_code=429, code="rate_limited", request_id="r", retry_after=3.0
        ),
        ga.APIStatusError("teapot", status_code=418, code="teapot", details={"a": 1}),
    ]
    exported = {
        getattr(gateway_async, name)
        for name in gateway_async.__all__
        if isinstance(getattr(gateway_async, name), type)
        and issubclass(getattr(gateway_async, name), ga.GatewayError)
    }
    status_classes = {c for c in exported if issubclass(c, ga.APIStatusError)}
    made += [
        cls("m", status_code=500, code="c", details={"x": 1}, request_id="req")
        for cls in sorted(status_classes, key=lambda c: c.__name__)
    ]

    def shape(error: BaseException) -> Any:
        fields = {
            k: shape(v) if isinstance(v, BaseException) else v for k, v in vars(error).items()
        }
        return (type(error), str(error), fields)

    for error in made:
        assert shape(pickle.loads(pickle.dumps(error))) == shape(error)

"""The ``/api/*`` error envelope: one exception that handlers raise, one response builder.

Every non-2xx answer under ``/api/`` is ``{"error": {"code", "message", "details"}}`` with
the contract's status/code pairs; ``details.field`` names the offending field when there
is one, and the message says how to fix it. Message and field are made encodable (a lone
surrogate echoed from the request becomes a ``\\udXXX`` escape), so building an error
can never fail in turn.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from ._wire import dumps, printable

CODES: Mapping[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    402: "insufficient_funds",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    410: "upload_expired",
    413: "payload_too_large",
    415: "unsupported_encoding",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}

INVALID_PART = "invalid_part"  # a 409 about complete's part list, as S3's InvalidPart
EXTRA_CODES = (INVALID_PART,)  # codes beside the one per status (for the OpenAPI document)
JSON_TYPE = "application/json"


class ApiError(Exception):
    """A contract error; the app middleware turns it into the envelope response."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "internal_error")
        self.message = printable(message)
        self.field = None if field is None else printable(field)
        self.headers = dict(headers or {})

    def envelope(self) -> dict[str, object]:
        """The JSON body of this error."""
        details = {} if self.field is None else {"field": self.field}
        return {"error": {"code": self.code, "message": self.message, "details": details}}

    def response(self) -> web.Response:
        """The complete HTTP response for this error."""
        return json_response(self.envelope(), status=self.status, headers=self.headers)


def invalid(field: str, message: str) -> ApiError:
    """A ``422 validation_error`` about ``field``."""
    return ApiError(422, message, field=field)


def json_response(
    body: object, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON response with the contract's content type."""
    return web.Response(
        text=dumps(body), status=status, content_type=JSON_TYPE, charset="utf-8", headers=headers
    )

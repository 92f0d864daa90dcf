"""The one error hierarchy of gateway_async, and the place where wire errors become it.

    GatewayError
    ├── InvalidRequestError (also ValueError)   refused by the SDK before any byte is sent
    ├── ConfigurationError (also ValueError)    the client cannot be built as asked
    ├── NotAttemptedError                       a batch item skipped because the batch was doomed
    ├── APIConnectionError                      no usable response: refused, reset, DNS, ...
    │   └── APITimeoutError (also TimeoutError) an attempt or the whole call ran out of time
    ├── APIResponseValidationError              a response that does not match the contract
    ├── UploadError                             the storage PUT failed for good, or the source
    │                                           changed or could not be re-read for a retry
    ├── JournalError                            a journal file that cannot be used (damaged, ...)
    │   ├── JournalLockedError                  in use by another process or Journal object
    │   └── JournalMismatchError                written for another Gateway, workspace or job
    └── APIStatusError                          the Gateway answered with a non-2xx status
        ├── BadRequestError             400
        ├── AuthenticationError         401
        ├── InsufficientFundsError      402
        ├── PermissionDeniedError       403
        ├── NotFoundError               404
        ├── ConflictError               409
        ├── UploadExpiredError          410
        ├── PayloadTooLargeError        413
        ├── UnprocessableEntityError    422
        ├── RateLimitError              429 (carries retry_after)
        └── ServerError                 5xx

Status errors carry ``status_code``, ``code``, ``message``, ``details`` and ``request_id``
so that a log line or a support ticket can name the exact request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

__all__ = [
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "GatewayError",
    "InsufficientFundsError",
    "InvalidRequestError",
    "JournalError",
    "JournalLockedError",
    "JournalMismatchError",
    "NotAttemptedError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "UnprocessableEntityError",
    "UploadError",
    "UploadExpiredError",
    "detached",
    "error_from_response",
    "executed_outcome",
    "journal_error",
    "mark_unknown",
]

_E = TypeVar("_E", bound=BaseException)


class GatewayError(Exception):
    """Base class of every error this SDK raises on purpose.

    ``after_unknown_attempt`` is True when an earlier attempt of the same call may have
    executed (a reset, a timeout, a 5xx): whatever this error says, the call's outcome is
    unknown (see ``executed_outcome``).
    """

    after_unknown_attempt: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's default pickling calls cls(*args), which the keyword-only fields of the
        # subclasses refuse; errors cross processes (multiprocessing, Ray), so rebuild from
        # the attributes instead. The traceback and chained exceptions are not carried.
        return (_restore, (type(self), self.args, dict(self.__dict__)))


def _restore(cls: type[GatewayError], args: tuple[Any, ...], state: dict[str, Any]) -> GatewayError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class InvalidRequestError(GatewayError, ValueError):
    """A request the SDK refuses before sending: ``field`` names the culprit."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ConfigurationError(GatewayError, ValueError):
    """The client was configured in a way that cannot work (missing key, bad base URL)."""


class NotAttemptedError(GatewayError):
    """A batch item that was never sent because an earlier error doomed the whole batch."""

    def __init__(self, message: str, *, reason: GatewayError) -> None:
        super().__init__(message)
        self.reason = reason


class APIConnectionError(GatewayError):
    """The request did not get a usable HTTP response (refused, reset, DNS failure...)."""


class APITimeoutError(APIConnectionError, TimeoutError):
    """An attempt, or the call's total deadline, ran out of time."""


class APIResponseValidationError(GatewayError):
    """The Gateway answered 2xx with a body that does not match the contract."""

    def __init__(
        self, message: str, *, status_code: int | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.request_id = request_id


class UploadError(GatewayError):
    """An upload that cannot finish: storage refused the bytes, or the source misbehaved.

    ``status_code`` is the storage's HTTP status when it answered; ``retryable`` tells
    whether trying the same source again later could succeed.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, retryable: bool = False
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retryable = retryable


class APIStatusError(GatewayError):
    """The Gateway answered with a non-2xx status and (usually) the contract's error envelope."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str,
        details: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.details: Mapping[str, Any] = details or {}
        self.request_id = request_id

    def __str__(self) -> str:
        rid = f", request_id={self.request_id}" if self.request_id else ""
        return f"{self.status_code} {self.code}: {self.message}{rid}"


class BadRequestError(APIStatusError):
    """400: the body was not JSON or not an object."""


class AuthenticationError(APIStatusError):
    """401: no or bad credentials. Every later call with this key fails too."""


class InsufficientFundsError(APIStatusError):
    """402: the wallet balance is below the run's price."""


class PermissionDeniedError(APIStatusError):
    """403: this key may not use this model (other models may still work)."""


class NotFoundError(APIStatusError):
    """404: unknown model slug, run or upload."""


class ConflictError(APIStatusError):
    """409: an idempotency key reused with another body, or an upload in the wrong state."""


class UploadExpiredError(APIStatusError):
    """410: the upload passed its ``expires_at``; start a fresh one."""


class PayloadTooLargeError(APIStatusError):
    """413: the declared or sent size is above the Gateway's limit."""


class UnprocessableEntityError(APIStatusError):
    """422: a field is missing, of the wrong type, or not allowed."""


class RateLimitError(APIStatusError):
    """429: too many requests. ``retry_after`` is the server's wait in seconds, if it sent one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(APIStatusError):
    """5xx: trouble on the Gateway's side; idempotent calls are retried before this surfaces."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientFundsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: UploadExpiredError,
    413: PayloadTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def _envelope(body: bytes) -> tuple[str | None, str | None, Mapping[str, Any] | None]:
    """Read ``{"error": {code, message, details}}``; anything else gives (None, None, None)."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: a body of 100,000 nested "["
        return None, None, None
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        return None, None, None
    code, message, details = err.get("code"), err.get("message"), err.get("details")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
        details if isinstance(details, dict) else None,
    )


def _fallback_message(status: int, reason: str | None, body: bytes) -> str:
    """A readable message for bodies without the envelope (an HTML 502 page, an empty body)."""
    text = body[:200].decode("utf-8", "replace").strip()
    kind = "HTML page" if text.lower().startswith(("<!doctype", "<html")) else None
    if not text:
        return f"HTTP {status} {reason or ''} with an empty body".replace("  ", " ")
    return f"HTTP {status} {reason or ''} ({kind or 'non-JSON body'}: {text[:80]!r})".replace(
        "  ", " "
    )


def error_from_response(
    status: int,
    body: bytes,
    *,
    reason: str | None = None,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> APIStatusError:
    """Map a non-2xx response to the matching APIStatusError subclass."""
    code, message, details = _envelope(body)
    message = message or _fallback_message(status, reason, body)
    code = code or ("internal_error" if status >= 500 else f"http_{status}")
    kw: dict[str, Any] = {
        "status_code": status,
        "code": code,
        "details": details,
        "request_id": request_id,
    }
    if status == 429:
        return RateLimitError(message, retry_after=retry_after, **kw)
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else APIStatusError)
    return cls(message, **kw)


def detached(error: _E) -> _E:
    """``error`` cut loose from the exceptions it was raised from or during.

    aiohttp's exceptions hold the request (``X-API-Key`` in ``request_info.headers``, a
    pre-signed URL in ``args``); chained as ``__cause__`` or ``__context__`` they reach any
    logger or error tracker that walks the chain. The caller keeps a redacted one-line
    description in the message instead, and must raise the result *outside* an ``except``
    block (Python sets ``__context__`` again when raising while handling).
    """
    error.__cause__ = None
    error.__context__ = None
    error.__suppress_context__ = False
    return error


Outcome = Literal["executed", "not executed", "unknown"]


def executed_outcome(error: BaseException) -> Outcome:
    """The one outcome rule for a call that ended in ``error`` (the budget, the journal and
    the item all use it): *not executed* only for a refusal before the request, or an answer
    that proves nothing ran (a 4xx other than 409, to a call no earlier attempt of which may
    have reached the Gateway); *unknown* for everything else (reset, timeout, 5xx, 409, and
    any answer to a retry of a possibly executed call other than its replayed reply).
    Unknown counts as spent, and keeps its key and body."""
    if isinstance(error, InvalidRequestError | NotAttemptedError):
        return "not executed"
    if not isinstance(error, GatewayError) or error.after_unknown_attempt:
        return "unknown"
    if isinstance(error, APIStatusError):
        proves = error.status_code < 500 and not isinstance(error, ConflictError)
        return "not executed" if proves else "unknown"
    return "unknown"


def mark_unknown(error: GatewayError) -> None:
    """Mark ``error`` as the last answer of a call an earlier attempt of which may have
    executed, and say so in its message (it must never suggest that nothing ran)."""
    if not error.after_unknown_attempt:
        error.after_unknown_attempt = True
        error.message += " (an earlier attempt of this call may have executed: outcome unknown)"
        error.args = (error.message, *error.args[1:])


class JournalError(GatewayError):
    """The journal file cannot be used (damaged, not a journal, unreadable, unwritable);
    ``path`` names it and the message says what to do."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class JournalLockedError(JournalError):
    """The journal file is in use by another process (or another ``Journal`` object)."""


class JournalMismatchError(JournalError):
    """The journal belongs to another Gateway, workspace or job than this ingest's."""


def journal_error(path: str, exc: BaseException) -> JournalError:
    """What an SQLite or OS error on the journal means for the user, and what to do."""
    import sqlite3  # loaded by whoever opened the journal; never at import of the SDK

    text = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in text:
        advice = "it is not a gateway-async journal; pass the path of a new file, e.g. ingest.db"
    elif any(word in text for word in ("full", "readonly", "I/O")) or isinstance(exc, OSError):
        advice = "free disk space (or check the disk), or pass a journal path on a writable disk"
    else:
        advice = "it is damaged; move it aside and pass a new journal path"
    return JournalError(f"journal {path} cannot be used ({text}): {advice}", path=path)

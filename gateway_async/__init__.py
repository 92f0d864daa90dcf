"""gateway_async: the asyncio-first SDK for the Gateway model-execution API.

    async with Gateway() as gw:          # GATEWAY_API_KEY / GATEWAY_BASE_URL from the environment
        run = await gw.runs.create(model="demo-echo", input={"text": "hi"})

Everything public is re-exported here; modules starting with ``_`` are private.
"""

from typing import TYPE_CHECKING, Any

# First, before the heavy imports: a Ctrl-C while the CLI starts exits 130 quietly.
from . import _startup  # noqa: F401
from ._client import Gateway
from ._config import NOT_GIVEN, Limits, Timeouts
from ._errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    GatewayError,
    InsufficientFundsError,
    InvalidRequestError,
    JournalError,
    JournalLockedError,
    JournalMismatchError,
    NotAttemptedError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UnprocessableEntityError,
    UploadError,
    UploadExpiredError,
)
from ._identity import idempotency_key
from ._retry import RetryPolicy
from ._telemetry import RequestInfo, ResponseInfo
from ._version import __version__
from .models import (
    MarketplaceModel,
    MediaRef,
    ModelUsage,
    Run,
    RunError,
    RunRequest,
    RunUsage,
    UsageSummary,
    Wallet,
)

if TYPE_CHECKING:
    from ._upload.engine import UploadProgress
    from .pipeline import (
        BudgetExhaustedError,
        Ingest,
        IngestEvent,
        IngestItem,
        IngestSummary,
        Journal,
    )

# Imported on first use, from the module that defines them: the pipeline and the upload
# machinery pull in sqlite3, threads and file I/O, which a client that only runs models
# never needs (tests/core/test_public_api.py keeps `import gateway_async` light).
_LAZY = {
    "BudgetExhaustedError": "pipeline",
    "Ingest": "pipeline",
    "IngestEvent": "pipeline",
    "IngestItem": "pipeline",
    "IngestSummary": "pipeline",
    "Journal": "pipeline",
    "UploadProgress": "_upload.engine",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'gateway_async' has no attribute {name!r}")


__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExhaustedError",
    "ConfigurationError",
    "ConflictError",
    "Gateway",
    "GatewayError",
    "Ingest",
    "IngestEvent",
    "IngestItem",
    "IngestSummary",
    "InsufficientFundsError",
    "InvalidRequestError",
    "Journal",
    "JournalError",
    "JournalLockedError",
    "JournalMismatchError",
    "Limits",
    "MarketplaceModel",
    "MediaRef",
    "ModelUsage",
    "NotAttemptedError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestInfo",
    "ResponseInfo",
    "RetryPolicy",
    "Run",
    "RunError",
    "RunRequest",
    "RunUsage",
    "ServerError",
    "Timeouts",
    "UnprocessableEntityError",
    "UploadError",
    "UploadExpiredError",
    "UploadProgress",
    "UsageSummary",
    "Wallet",
    "__version__",
    "idempotency_key",
]

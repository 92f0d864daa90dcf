"""gateway_async: the asyncio-first SDK for the Gateway model-execution API.

    async with Gateway() as gw:          # GATEWAY_API_KEY / GATEWAY_BASE_URL from the environment
        run = await gw.runs.create(model="demo-echo", input={"text": "hi"})

Everything public is re-exported here; modules starting with ``_`` are private.
"""

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
    NotAttemptedError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UnprocessableEntityError,
    UploadExpiredError,
)
from ._retry import RetryPolicy
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

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "Gateway",
    "GatewayError",
    "InsufficientFundsError",
    "InvalidRequestError",
    "Limits",
    "MarketplaceModel",
    "MediaRef",
    "ModelUsage",
    "NotAttemptedError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "RetryPolicy",
    "Run",
    "RunError",
    "RunRequest",
    "RunUsage",
    "ServerError",
    "Timeouts",
    "UnprocessableEntityError",
    "UploadExpiredError",
    "UsageSummary",
    "Wallet",
    "__version__",
]

"""Frozen configuration objects, validated when built: timeouts, limits, credentials, base URL."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from enum import Enum
from typing import Any, Final, Literal

import attrs
from yarl import URL

from ._errors import ConfigurationError

__all__ = [
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "NOT_GIVEN",
    "Credentials",
    "Limits",
    "NotGiven",
    "Timeouts",
    "finite_seconds",
    "parse_base_url",
]

ENV_API_KEY: Final = "GATEWAY_API_KEY"
ENV_BASE_URL: Final = "GATEWAY_BASE_URL"


class NotGiven(Enum):
    """'The caller said nothing', distinct from an explicit ``None``."""

    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven.NOT_GIVEN


def finite_seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """``value`` as seconds, or ConfigurationError naming ``name``.

    NaN compares False with everything, so a ``value <= 0`` check lets it through and then
    no deadline ever fires; infinity is no bound either (pass None to mean that).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        kind = "non-negative" if allow_zero else "positive"
        raise ConfigurationError(
            f"{name} must be a finite {kind} number of seconds, got {value!r:.40}"
        )
    return float(value)


def _positive_or_none(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        finite_seconds(attribute.name, value)


@attrs.frozen(kw_only=True)
class Timeouts:
    """How long a call may take.

    ``total`` bounds the whole call, every attempt and backoff included; ``attempt`` bounds
    one HTTP exchange; ``connect`` bounds getting a connection. ``None`` means no bound.
    """

    total: float | None = attrs.field(default=300.0, validator=_positive_or_none)
    attempt: float | None = attrs.field(default=120.0, validator=_positive_or_none)
    connect: float | None = attrs.field(default=10.0, validator=_positive_or_none)


def call_timeouts(base: Timeouts, timeout: float | Timeouts | NotGiven | None) -> Timeouts:
    """``base`` with a caller's ``timeout=`` applied: seconds (or None) replace the total.

    A bad number is refused in the caller's words (``timeout``), not as the ``total`` field
    of ``Timeouts`` it becomes.
    """
    if isinstance(timeout, NotGiven):
        return base
    if isinstance(timeout, Timeouts):
        return timeout
    if timeout is not None:
        finite_seconds("timeout", timeout)
    return attrs.evolve(base, total=timeout)


def _positive_int(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"{attribute.name} must be a positive integer")


def _non_negative_seconds(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    finite_seconds(attribute.name, value, allow_zero=True)


@attrs.frozen(kw_only=True)
class Limits:
    """Connection pool sizes and the client-wide bound on concurrent storage PUTs."""

    max_connections: int = attrs.field(default=100, validator=_positive_int)
    max_concurrent_uploads: int = attrs.field(default=16, validator=_positive_int)
    keepalive_timeout: float = attrs.field(default=30.0, validator=_non_negative_seconds)
    dns_cache_ttl: int = 300


@attrs.frozen
class Credentials:
    """The one credential a client sends. Its repr never shows the secret."""

    kind: Literal["api_key", "access_token"]
    secret: str = attrs.field(repr=False)

    @classmethod
    def resolve(
        cls, api_key: str | None, access_token: str | None, env: Mapping[str, str] = os.environ
    ) -> Credentials:
        if api_key is not None and access_token is not None:
            raise ConfigurationError(
                "pass either api_key or access_token, not both: the Gateway takes one credential"
            )
        if access_token is not None:
            return cls("access_token", _non_blank(access_token, "access_token"))
        key = api_key if api_key is not None else env.get(ENV_API_KEY)
        if key is None:
            raise ConfigurationError(
                f"no API key: pass api_key=... or set the {ENV_API_KEY} environment variable"
            )
        return cls("api_key", _non_blank(key, "api_key" if api_key is not None else ENV_API_KEY))

    def headers(self) -> dict[str, str]:
        if self.kind == "api_key":
            return {"X-API-Key": self.secret}
        return {"Authorization": f"Bearer {self.secret}"}


def _non_blank(secret: str, name: str) -> str:
    if not isinstance(secret, str) or not secret.strip():
        raise ConfigurationError(f"{name} is empty: pass a real credential")
    if any(ord(ch) < 33 or ord(ch) > 126 for ch in secret):
        raise ConfigurationError(
            f"{name} contains whitespace or non-ASCII characters: copy the key again"
        )
    return secret


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_base_url(
    base_url: str | URL | None,
    *,
    allow_insecure_http: bool = False,
    env: Mapping[str, str] = os.environ,
) -> URL:
    """Check the Gateway base URL; refuse plain http to anything but loopback."""
    raw = base_url if base_url is not None else env.get(ENV_BASE_URL)
    if raw is None or not str(raw).strip():
        raise ConfigurationError(
            f"no base URL: pass base_url=... or set the {ENV_BASE_URL} environment variable"
        )
    url = URL(str(raw).strip())
    if url.scheme not in ("http", "https"):
        raise ConfigurationError(f"base_url {str(raw)!r} must start with https:// (or http://)")
    if not url.host:
        raise ConfigurationError(f"base_url {str(raw)!r} has no host")
    if url.user or url.password or url.query_string or url.fragment:
        raise ConfigurationError(
            "base_url must not carry credentials, a query or a fragment: pass the origin "
            "(and optional path prefix) only"
        )
    if url.scheme == "http" and not _is_loopback(url.host) and not allow_insecure_http:
        raise ConfigurationError(
            f"base_url uses plain http to {url.host}: the API key would travel in clear text. "
            "Use https://, or pass allow_insecure_http=True if you really mean it"
        )
    return url.with_path(url.path.rstrip("/"))

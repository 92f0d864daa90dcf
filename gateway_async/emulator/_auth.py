"""Who is calling: ``X-API-Key`` for servers, ``Authorization: Bearer`` for browser sessions.

A request that sends an ``X-API-Key`` is judged by it alone; a bearer token counts only
when configured as a browser session. Anything else is ``401 unauthorized``.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from ._errors import ApiError


class Auth:
    """The configured API keys and browser-session tokens."""

    def __init__(self, api_keys: Iterable[str], browser_tokens: Iterable[str]) -> None:
        self._keys = frozenset(api_keys)
        self._tokens = frozenset(browser_tokens)

    def credential(self, request: web.Request) -> str:
        """The caller's API key or token; raise 401 when there is no valid one."""
        key = request.headers.get("X-API-Key")
        if key is not None:
            if key in self._keys:
                return key
            raise ApiError(401, "the X-API-Key header does not hold a valid API key")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip() in self._tokens:
            return token.strip()
        raise ApiError(401, "missing credentials: send your API key in the X-API-Key header")

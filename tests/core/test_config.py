"""Building a Gateway: credentials, base URL safety, and secrets kept out of reprs."""

from __future__ import annotations

import pytest

from gateway_async import ConfigurationError, Gateway, Limits, RetryPolicy, Timeouts

KEY = "gk_live_verysecret_123"


async def test_missing_key_names_the_environment_variable() -> None:
    """No key and no env var: the error says how to fix it."""
    with pytest.raises(ConfigurationError, match="GATEWAY_API_KEY"):
        Gateway(base_url="https://gw.example", env={})


async def test_key_and_base_url_come_from_the_environment() -> None:
    """Gateway() reads GATEWAY_API_KEY and GATEWAY_BASE_URL."""
    env = {"GATEWAY_API_KEY": KEY, "GATEWAY_BASE_URL": "https://gw.example/prefix/"}
    async with Gateway(env=env) as gw:
        assert str(gw.base_url) == "https://gw.example/prefix"


async def test_missing_base_url_names_the_environment_variable() -> None:
    """No base URL anywhere: the error names GATEWAY_BASE_URL."""
    with pytest.raises(ConfigurationError, match="GATEWAY_BASE_URL"):
        Gateway(api_key=KEY, env={})


async def test_key_and_token_together_are_refused() -> None:
    """The Gateway takes one credential; sending both is a configuration error."""
    with pytest.raises(ConfigurationError, match="not both"):
        Gateway(api_key=KEY, access_token="tok", base_url="https://gw.example")


@pytest.mark.parametrize(
    ("base_url", "fragment"),
    [
        ("ftp://gw.example", "https://"),
        ("http://gw.example", "clear text"),
        ("http://10.0.0.5:8080", "clear text"),
        ("https://", "no host"),
        ("https://user:pw@gw.example", "credentials"),
        ("https://gw.example/?x=1", "query"),
        ("", "GATEWAY_BASE_URL"),
    ],
)
async def test_bad_base_urls_are_refused(base_url: str, fragment: str) -> None:
    """Each bad base URL fails at construction with a message saying what to change."""
    with pytest.raises(ConfigurationError, match=fragment):
        Gateway(api_key=KEY, base_url=base_url, env={})


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.9.9.9"])
async def test_plain_http_to_loopback_is_allowed(host: str) -> None:
    """Local emulators run on plain http; loopback needs no opt-in."""
    async with Gateway(api_key=KEY, base_url=f"http://{host}:8080") as gw:
        assert gw.base_url.scheme == "http"


async def test_plain_http_elsewhere_needs_the_explicit_opt_in() -> None:
    """allow_insecure_http=True is the documented escape hatch."""
    async with Gateway(api_key=KEY, base_url="http://gw.internal", allow_insecure_http=True):
        pass


@pytest.mark.parametrize("bad", ["", "   ", "has space", "tab\tkey", "clé"])
async def test_blank_or_mangled_keys_are_refused(bad: str) -> None:
    """A key with whitespace or non-ASCII was pasted wrong; say so before sending it."""
    with pytest.raises(ConfigurationError):
        Gateway(api_key=bad, base_url="https://gw.example")


async def test_repr_and_str_never_show_the_key() -> None:
    """Neither repr() nor str() of the client or its credentials shows the secret."""
    async with Gateway(api_key=KEY, base_url="https://gw.example") as gw:
        for text in (repr(gw), str(gw), repr(gw._credentials), repr(gw.__dict__)):
            assert KEY not in text
        assert "api_key" in repr(gw)


def test_config_objects_validate_when_built() -> None:
    """Frozen config objects refuse nonsense at construction, like aiohttp.ClientTimeout."""
    with pytest.raises(ConfigurationError):
        Timeouts(total=-1)
    with pytest.raises(ConfigurationError):
        Limits(max_connections=0)
    with pytest.raises(ConfigurationError):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ConfigurationError):
        Gateway(api_key=KEY, base_url="https://gw.example", max_retries=-2)


async def test_timeout_float_sets_the_total_deadline() -> None:
    """timeout=5 is shorthand for Timeouts(total=5); None removes the bound."""
    async with Gateway(api_key=KEY, base_url="https://gw.example", timeout=5) as gw:
        assert gw.timeouts.total == 5
    async with Gateway(api_key=KEY, base_url="https://gw.example", timeout=None) as gw:
        assert gw.timeouts.total is None

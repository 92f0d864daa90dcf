"""Options of ``Gateway(...)`` that took the wrong type were accepted, then failed raw at
the first call (``limits=5``: AttributeError) or raw at construction
(``event_hooks={"request": print}``: TypeError). Each is a ConfigurationError naming it."""

from __future__ import annotations

from typing import Any

import pytest

from gateway_async import ConfigurationError, Gateway, Limits, RetryPolicy

URL = "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"limits": 5}, r"^limits: expected a Limits or None, got int 5; .*Limits\("),
        ({"retry": 3}, r"^retry: expected a RetryPolicy or None, got int 3; .*RetryPolicy\("),
        (
            {"event_hooks": {"request": print}},
            r"^event_hooks\['request'\]: expected a list of callables, got "
            r"builtin_function_or_method; pass \{'request': \[fn, \.\.\.\]\}",
        ),
        ({"event_hooks": {"response": "log"}}, r"^event_hooks\['response'\]: expected a list"),
    ],
)
async def test_a_wrong_option_type_is_refused_at_construction(options: Any, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        Gateway(api_key="k", base_url=URL, **options)


async def test_the_documented_shapes_still_work() -> None:
    """The seam: instances, None, and hooks as a list or a tuple are accepted."""
    gateways = [
        Gateway(api_key="k", base_url=URL, limits=Limits(max_connections=5)),
        Gateway(api_key="k", base_url=URL, retry=RetryPolicy(), limits=None),
        Gateway(api_key="k", base_url=URL, event_hooks={"request": [print], "response": ()}),
    ]
    assert gateways[0].limits.max_connections == 5
    for gw in gateways:
        await gw.aclose()

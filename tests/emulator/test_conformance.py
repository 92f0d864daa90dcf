"""Third-party conformance: schemathesis fuzzes a live emulator against its own OpenAPI document.

Every phase (examples, coverage, fuzzing, stateful) and every check runs, with a fixed
seed and bounded examples, once with a valid key, once with a wrong key and once with no
key; any failed check, or any error inside the engine, fails the test. The engine runs in
a worker thread (it sends blocking ``requests`` calls) while the emulator serves on this
test's event loop.

Settings that differ from schemathesis's defaults: ``max_response_time`` gets a limit
(20 s; the check is off without one); ``negative_data_rejection`` expects exactly the
contract's 4xx codes, which include ``413`` (an upload whose declared ``size`` is above
the limit, a ``maximum`` in the document, is ``413 payload_too_large``) and exclude 5xx;
Hypothesis's timing health check is off (a loaded CI box would trip it at random). A
``media_ref`` strategy makes generated runs of the image model name real uploads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events
from schemathesis.specs.openapi.formats import unregister_string_format

from gateway_async.emulator import DEFAULT_API_KEY, Emulator
from gateway_async.emulator._png import encode

from .conftest import Api

SEED = 20261201
ALL_CHECKS = {  # every check schemathesis 4 has for OpenAPI
    "allow_header_conformance",
    "content_type_conformance",
    "ensure_resource_availability",
    "ignored_auth",
    "max_response_time",
    "missing_required_header",
    "negative_data_rejection",
    "not_a_server_error",
    "object_level_authorization",
    "positive_data_acceptance",
    "response_headers_conformance",
    "response_schema_conformance",
    "status_code_conformance",
    "unsupported_method",
    "use_after_free",
}
# The contract's 4xx answers: schemathesis's default list, less 406/415/428 (never sent)
# and 5xx (never right for bad input), plus 413 (an upload size above the limit).
REFUSALS = ["400", "401", "403", "404", "405", "409", "413", "422", "429"]
SLOWEST = 20.0  # seconds: max_response_time needs a limit; generous for a loaded CI box
# (X-API-Key header or None, max examples per operation and phase)
RUNS = {"valid key": (DEFAULT_API_KEY, 25), "wrong key": ("gw_wrong_key", 5), "no key": (None, 5)}


@dataclass
class Outcome:
    """What one schemathesis run did: requests sent, checks that ran, what failed."""

    cases: int = 0
    checks: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def fuzz(document: dict[str, Any], base_url: str, key: str | None, examples: int) -> Outcome:
    """Run every schemathesis phase and check against ``base_url``."""
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            # Hypothesis's timing health check would make a loaded CI box fail at random.
            "suppress-health-check": ["too_slow"],
            "base-url": base_url,
            "headers": {} if key is None else {"X-API-Key": key},
            "generation": {"max-examples": examples, "database": "none"},
            "checks": {
                "enabled": True,
                "max_response_time": SLOWEST,
                "negative_data_rejection": {"expected-statuses": REFUSALS},
            },
        }
    )
    schema = schemathesis.openapi.from_dict(document, config=config)
    outcome = Outcome()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            outcome.cases += len(event.recorder.cases)
            outcome.checks.update(c.name for cs in event.recorder.checks.values() for c in cs)
            outcome.problems += _failed_checks(event)
        elif isinstance(event, events.NonFatalError | events.FatalError):
            outcome.problems.append(f"engine error: {event!r}")
        elif isinstance(event, events.EngineFinished) and event.stop_reason != "completed":
            outcome.problems.append(f"stopped: {event.stop_reason}")
    return outcome


def _failed_checks(event: events.ScenarioFinished) -> list[str]:
    return [
        f"{event.recorder.label} {check.name}: {check.failure_info.failure.title}\n"
        f"{check.failure_info.code_sample}"
        for checks in event.recorder.checks.values()
        for check in checks
        if check.failure_info is not None
    ]


@contextmanager
def media_refs(refs: list[str]) -> Iterator[None]:
    """Let schemathesis fill ``"format": "media_ref"`` with uploads that exist."""
    schemathesis.openapi.format("media_ref", st.sampled_from(refs))
    try:
        yield
    finally:
        unregister_string_format("media_ref")


@pytest.mark.parametrize("run", list(RUNS))
async def test_schemathesis_finds_no_failure(api: Api, emu: Emulator, run: str) -> None:
    """Every schemathesis check passes against the emulator's own document."""
    key, examples = RUNS[run]
    image = encode(2, 2, bytes(range(12)))
    refs = [await api.upload(image, "image/png"), await api.upload(b"not an image")]
    document = (await api.get("/api/openapi.json")).body
    with media_refs(refs):
        outcome = await asyncio.to_thread(fuzz, document, emu.base_url, key, examples)
    assert outcome.problems == [], "\n\n".join(outcome.problems)
    assert outcome.cases >= 500  # it really ran: hundreds of requests
    assert outcome.checks == ALL_CHECKS, sorted(outcome.checks)

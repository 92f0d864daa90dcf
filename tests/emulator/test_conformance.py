"""Third-party conformance: schemathesis fuzzes a live emulator against its own OpenAPI document.

Every phase (examples, coverage, fuzzing, stateful) and every check runs, with a fixed
seed and bounded examples, once with a valid key, once with a wrong key and once with no
key; any failed check, or any error inside the engine, fails the test. The engine runs in
a worker thread (it sends blocking ``requests`` calls) while the emulator serves on this
test's event loop.

One setting differs from schemathesis's defaults: ``negative_data_rejection`` also expects
``413``, because the contract answers an upload whose declared ``size`` is above the
limit (a ``maximum`` in the document) with ``413 payload_too_large``, not 400/422.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES
from schemathesis.engine import events
from schemathesis.specs.openapi.formats import unregister_string_format

from gateway_async.emulator import DEFAULT_API_KEY, Emulator
from gateway_async.emulator._png import encode

from .conftest import Api

SEED = 20261201
# (X-API-Key header or None, max examples per operation and phase)
RUNS = {"valid key": (DEFAULT_API_KEY, 30), "wrong key": ("gw_wrong_key", 6), "no key": (None, 6)}


def fuzz(
    document: dict[str, Any], base_url: str, key: str | None, examples: int
) -> tuple[int, list[str]]:
    """Run every schemathesis phase and check: the number of requests sent, and one entry
    per failed check or engine error."""
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "base-url": base_url,
            "headers": {} if key is None else {"X-API-Key": key},
            "generation": {"max-examples": examples, "database": "none"},
            "checks": {
                "enabled": True,
                "negative_data_rejection": {
                    "expected-statuses": [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413"]
                },
            },
        }
    )
    schema = schemathesis.openapi.from_dict(document, config=config)
    cases, problems = 0, []
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            cases += len(event.recorder.cases)
            problems += _failed_checks(event)
        elif isinstance(event, events.NonFatalError | events.FatalError):
            problems.append(f"engine error: {event!r}")
        elif isinstance(event, events.EngineFinished):
            problems += [] if event.stop_reason == "completed" else [str(event.stop_reason)]
    return cases, problems


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
        cases, problems = await asyncio.to_thread(fuzz, document, emu.base_url, key, examples)
    assert problems == [], "\n\n".join(problems)
    assert cases >= 100 * len(document["paths"]) // 8  # it really ran: hundreds of requests

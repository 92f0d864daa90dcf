"""Schemathesis against an emulator that answers with parts: the version-2 operations and
the multipart ticket conform to the emulator's own OpenAPI document."""

from __future__ import annotations

import asyncio

from gateway_async.emulator import DEFAULT_API_KEY, Emulator
from gateway_async.emulator._png import encode
from tests.emulator.conftest import Api
from tests.emulator.test_conformance import ALL_CHECKS, fuzz, media_refs


async def test_schemathesis_finds_no_failure_with_parts(api: Api, emu: Emulator) -> None:
    """Every check passes; init answers parts for most generated sizes (above 5 MiB)."""
    refs = [await api.upload(encode(2, 2, bytes(range(12))), "image/png")]
    document = (await api.get("/api/openapi.json")).body
    with media_refs(refs):
        outcome = await asyncio.to_thread(fuzz, document, emu.base_url, DEFAULT_API_KEY, 5)
    assert outcome.problems == [], "\n\n".join(outcome.problems)
    assert outcome.cases >= 100
    assert outcome.checks == ALL_CHECKS, sorted(outcome.checks)
    assert emu.core.multipart.records  # some inits really answered with parts

"""The part planner and the ticket checks: pure functions, no network."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_async import APIResponseValidationError
from gateway_async._upload.parts import (
    MultipartTicket,
    PartUrl,
    plan,
    plan_ticket,
    structure_ticket,
)
from gateway_async.models import UploadTicket


def ticket(part_size: int, numbers: list[int]) -> MultipartTicket:
    return MultipartTicket(
        upload_id="upl_1",
        method="PUT",
        headers={},
        expires_at=datetime(2099, 1, 1, tzinfo=UTC),
        part_size=part_size,
        parts=tuple(PartUrl(part_number=n, upload_url=f"https://s/{n}?sig") for n in numbers),
    )


@settings(deadline=None, derandomize=True, max_examples=200)
@given(size=st.integers(1, 10**12), part_size=st.integers(1, 10**10))
def test_parts_tile_the_file(size: int, part_size: int) -> None:
    """Consecutive, numbered from 1, every part full but the last, covering every byte."""
    if -(-size // part_size) > 10_000:
        return
    parts = plan(size, part_size)
    assert [p.number for p in parts] == list(range(1, len(parts) + 1))
    assert parts[0].offset == 0
    assert all(a.offset + a.size == b.offset for a, b in itertools.pairwise(parts))
    assert parts[-1].offset + parts[-1].size == size
    assert all(p.size == part_size for p in parts[:-1])
    assert 0 < parts[-1].size <= part_size


def test_a_last_part_of_one_byte() -> None:
    assert [(p.offset, p.size) for p in plan(11, 5)] == [(0, 5), (5, 5), (10, 1)]


@pytest.mark.parametrize(
    ("size", "part_size", "numbers"),
    [
        (11, 5, [1, 2]),  # a part missing
        (11, 5, [1, 2, 3, 4]),  # one too many
        (11, 5, [0, 1, 2]),  # numbered from 0
        (11, 0, []),  # no part size
        (0, 5, [1]),  # nothing to split
        (10_001, 1, list(range(1, 10_002))),  # above S3's 10,000 parts
    ],
)
def test_a_ticket_that_does_not_cover_the_file_is_refused(
    size: int, part_size: int, numbers: list[int]
) -> None:
    with pytest.raises(APIResponseValidationError, match="malformed multipart ticket"):
        plan_ticket(size, ticket(part_size, numbers))


def test_parts_may_come_in_any_order() -> None:
    assert len(plan_ticket(11, ticket(5, [3, 1, 2]))) == 3


def test_the_init_answer_decides_single_or_multipart() -> None:
    base = {
        "upload_id": "upl_1",
        "method": "PUT",
        "headers": {},
        "expires_at": "2099-01-01T00:00:00Z",
    }
    single = structure_ticket({**base, "upload_url": "https://s/x?sig"}, None)
    assert isinstance(single, UploadTicket)
    parts = [{"part_number": 1, "upload_url": "https://s/1?sig"}]
    multi = structure_ticket({**base, "part_size": 5, "parts": parts}, None)
    assert isinstance(multi, MultipartTicket)
    assert "sig" not in repr(multi)  # pre-signed URLs are secrets

"""The emulator's record of multipart uploads (contract version 2): which parts storage holds.

One record per multipart upload, beside the ``Upload`` that ``init`` created: the part size,
the part count and, per stored part, its size, sha256 and ETag. Records are written through
to their own ``multipart`` table, so an emulator restarted on the same data directory still
lists the parts a restarted client asks about. Part bytes live in ``media/parts/<upload_id>/``
until ``complete`` assembles them.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._db import Db

MIN_PART_SIZE = 5 * 1024**2  # as S3: every part but the last holds at least 5 MiB
MAX_PARTS = 10_000  # as S3


@dataclass
class MultipartRecord:
    """The parts of one multipart upload (``parts`` keys are part numbers as strings)."""

    upload_id: str
    size: int
    part_size: int
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """How many parts the upload has."""
        return -(-self.size // self.part_size)

    def part_length(self, number: int) -> int | None:
        """The exact size of part ``number``, or None when there is no such part."""
        if not 1 <= number <= self.count:
            return None
        return min(self.part_size, self.size - (number - 1) * self.part_size)

    def listing(self) -> list[dict[str, Any]]:
        """The stored parts in the contract's shape, by part number."""
        return [
            {"part_number": int(n), "size": p["size"], "etag": p["etag"]}
            for n, p in sorted(self.parts.items(), key=lambda item: int(item[0]))
        ]


def plan_part_size(size: int, wanted: int) -> int:
    """The part size for an object of ``size`` bytes: ``wanted``, raised to the 5 MiB
    minimum and to what keeps the part count within 10,000."""
    return max(wanted, MIN_PART_SIZE, -(-size // MAX_PARTS))


class MultipartStore:
    """Every multipart upload's record, written through to the database."""

    def __init__(self, db: Db, root: Path) -> None:
        self._db = db
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.records = {k: MultipartRecord(**v) for k, v in db.load("multipart").items()}

    def start(self, upload_id: str, size: int, part_size: int) -> MultipartRecord:
        """Record a new multipart upload."""
        record = MultipartRecord(upload_id, size, part_size)
        self.save(record)
        return record

    def save(self, record: MultipartRecord) -> None:
        """Store or update a record."""
        self.records[record.upload_id] = record
        self.write(record)

    def write(self, record: MultipartRecord) -> None:
        """Write a record to the database only (inside a caller's transaction)."""
        self._db.put("multipart", record.upload_id, dataclasses.asdict(record))

    def part_file(self, upload_id: str, number: int) -> Path:
        """Where the last complete PUT of one part lives until ``complete``."""
        return self.root / upload_id / str(number)

    def stored(self, record: MultipartRecord, number: int, sha256: str) -> str:
        """Record a part whose bytes were just moved into place; its ETag (quoted)."""
        etag = f'"{sha256[:32]}"'
        record.parts[str(number)] = {
            "size": record.part_length(number),
            "sha256": sha256,
            "etag": etag,
        }
        self.save(record)
        return etag

    def drop_parts(self, upload_id: str) -> None:
        """Delete the part files of an assembled (or abandoned) upload."""
        shutil.rmtree(self.root / upload_id, ignore_errors=True)

    def abort(self, upload_id: str) -> None:
        """Forget a multipart upload and its parts (S3's AbortMultipartUpload): later part
        PUTs get ``404 NoSuchUpload``."""
        self.records.pop(upload_id, None)
        self._db.delete("multipart", upload_id)
        self.drop_parts(upload_id)

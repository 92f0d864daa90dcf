"""Multipart uploads (contract version 2): the Gateway endpoints and the part PUTs.

With ``multipart_threshold`` set, ``init`` for a ``size`` strictly above it answers
``part_size`` and one signed URL per part instead of one ``upload_url``. Each part is a
signed PUT under the single-PUT rules (credentials 400, bad or expired signature 403, no
Content-Length 411, the exact part length), fault injection included; a part of an upload
that no longer exists gets S3's ``404 NoSuchUpload``. ``POST /api/media/upload/parts``
re-signs parts (and extends the upload's life, as a client still working on it shows it is
alive); ``GET /api/media/upload/{upload_id}`` lists the stored parts. ``complete`` checks
every part's ETag and sha256 and assembles the parts into one file in a worker thread,
1 MiB at a time, so the object is never held in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from typing import Any

from aiohttp import web

from ._core import CORE, Core, idempotent_post, refuse_unknown
from ._errors import ApiError, invalid, json_response
from ._idempotency import Answer
from ._multipart_state import MultipartRecord, plan_part_size
from ._signing import signed_query
from ._state import Upload
from ._storage import StorageError, Target, serve_put
from ._wire import new_id, rfc3339

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_REFRESH_FIELDS = ("upload_id", "part_numbers")
_COPY_CHUNK = 1024 * 1024


def wants_parts(core: Core, size: int) -> bool:
    """Whether ``init`` answers with parts: a threshold is set and ``size`` is above it."""
    threshold = core.settings.multipart_threshold
    return threshold is not None and size > threshold


def init_answer(core: Core, upload: Upload) -> web.Response:
    """The ``201`` of ``init`` for a multipart upload (the upload is already saved)."""
    part_size = plan_part_size(upload.size, core.settings.part_size)
    record = core.multipart.start(upload.upload_id, upload.size, part_size)
    expires = int(upload.expires_at)
    return json_response(
        {
            "upload_id": upload.upload_id,
            "method": "PUT",
            "headers": {"Content-Type": upload.content_type},
            "expires_at": rfc3339(expires),
            "part_size": part_size,
            "parts": _part_urls(core, record, range(1, record.count + 1), expires),
        },
        status=201,
    )


def _part_urls(
    core: Core, record: MultipartRecord, numbers: Any, expires: int
) -> list[dict[str, Any]]:
    urls = []
    for number in numbers:
        path = f"/storage/{record.upload_id}/parts/{number}"
        size = record.part_length(number) or 0
        query = signed_query(core.state.secret, path, expires, size)
        urls.append({"part_number": number, "upload_url": f"{core.storage_url}{path}?{query}"})
    return urls


def _upload_or_404(core: Core, upload_id: object) -> Upload:
    if not isinstance(upload_id, str) or not upload_id:
        raise invalid("upload_id", "upload_id is required: the id returned by upload/init")
    upload = core.state.uploads.get(upload_id)
    if upload is None:
        raise ApiError(
            404, f"no upload {upload_id!r}; start one with upload/init", field="upload_id"
        )
    return upload


# -- GET /api/media/upload/{upload_id} ---------------------------------------------------------


async def show_upload(request: web.Request) -> web.Response:
    """Handle ``GET /api/media/upload/{upload_id}``: the parts storage holds."""
    core = request.app[CORE]
    upload = _upload_or_404(core, request.match_info["upload_id"])
    record = core.multipart.records.get(upload.upload_id)
    return json_response(
        {
            "upload_id": upload.upload_id,
            "status": "pending" if upload.media_ref is None else "completed",
            "size": upload.size,
            "part_size": None if record is None else record.part_size,
            "parts": [] if record is None else record.listing(),
            "expires_at": rfc3339(upload.expires_at),
        }
    )


# -- POST /api/media/upload/parts --------------------------------------------------------------


async def refresh_parts(request: web.Request) -> web.Response:
    """Handle ``POST /api/media/upload/parts``: fresh URLs for the parts asked for."""
    return await idempotent_post(request, _refresh)


async def _refresh(core: Core, body: dict[str, Any]) -> Answer:
    refuse_unknown(body, _REFRESH_FIELDS)
    upload = _upload_or_404(core, body.get("upload_id"))
    record = _pending_record(core, upload)
    numbers = _part_numbers(body.get("part_numbers"), record)
    expires = int(core.clock() + core.settings.upload_ttl)
    upload.expires_at = max(upload.expires_at, float(expires))
    core.state.save_upload(upload)
    return Answer(
        json_response(
            {"parts": _part_urls(core, record, numbers, expires), "expires_at": rfc3339(expires)}
        )
    )


def _pending_record(core: Core, upload: Upload) -> MultipartRecord:
    record = core.multipart.records.get(upload.upload_id)
    if record is None:  # a well-formed request about the wrong kind of upload: 409
        raise ApiError(
            409,
            f"upload {upload.upload_id!r} is not a multipart upload; "
            "its upload_url comes from upload/init",
            field="upload_id",
        )
    if upload.media_ref is not None:
        raise ApiError(409, f"upload {upload.upload_id!r} is already completed", field="upload_id")
    return record


def _part_number(value: object) -> int | None:
    """A JSON integer >= 1 (``3.0`` is the integer 3), else None."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


def _part_numbers(value: object, record: MultipartRecord) -> list[int]:
    fix = f"part_numbers must be a non-empty list of part numbers from 1 to {record.count}"
    numbers = [_part_number(n) for n in value] if isinstance(value, list) else []
    if not numbers or None in numbers:
        raise invalid("part_numbers", fix)
    for number in numbers:
        if record.part_length(number or 0) is None:  # well-formed, but no such part: 409
            raise ApiError(409, fix, field="part_numbers")
    return list(dict.fromkeys(n for n in numbers if n is not None))


# -- PUT /storage/{upload_id}/parts/{part_number} ----------------------------------------------


async def put_part(request: web.Request) -> web.Response:
    """Handle one part PUT on the storage listener."""
    return await serve_put(request, _part_target)


def _part_target(core: Core, request: web.Request, upload: Upload) -> Target:
    record = core.multipart.records.get(upload.upload_id)
    if record is None or upload.media_ref is not None:
        raise _no_such_upload()
    raw = request.match_info["part_number"]
    number = int(raw) if raw.isdigit() else 0
    length = record.part_length(number)
    if length is None:
        raise StorageError(403, "SignatureDoesNotMatch", "No such part was signed.")

    def stored(sha256: str) -> str:
        if core.multipart.records.get(upload.upload_id) is not record:  # aborted meanwhile
            core.multipart.drop_parts(upload.upload_id)
            raise _no_such_upload()
        return core.multipart.stored(record, number, sha256)

    return Target(length, core.multipart.part_file(upload.upload_id, number), stored)


def _no_such_upload() -> StorageError:
    return StorageError(
        404,
        "NoSuchUpload",
        "The specified multipart upload does not exist. Start a new one with upload/init.",
    )


# -- complete ----------------------------------------------------------------------------------


async def assemble(core: Core, upload: Upload, body: dict[str, Any]) -> None:
    """For a multipart upload: check ``parts`` of the ``complete`` body against the stored
    parts (409 on a missing part, another ETag or sha256), then join them into the upload's
    file, as a single PUT would have left it. Any other upload must not send ``parts``."""
    record = core.multipart.records.get(upload.upload_id)
    if record is None:
        if body.get("parts") is not None:
            _given_parts(body["parts"])  # malformed: 422; well-formed: the wrong upload, 409
            raise ApiError(
                409,
                "parts is only for multipart uploads (init answered parts); complete this "
                "one without parts",
                field="parts",
            )
        return
    _check_parts(record, body.get("parts"))
    upload.put_sha256 = await asyncio.to_thread(_join, core, record)
    core.state.save_upload(upload)
    core.multipart.drop_parts(upload.upload_id)


def _check_parts(record: MultipartRecord, value: object) -> None:
    given = _given_parts(value)
    for number in range(1, record.count + 1):
        stored = record.parts.get(str(number))
        if number not in given or stored is None:
            where = "was not sent to storage" if stored is None else "is missing from parts"
            raise ApiError(
                409,
                f"part {number} of {record.count} {where}; PUT every part, then complete",
                field="parts",
            )
        etag, sha256 = given[number]
        if etag != stored["etag"]:
            raise ApiError(
                409,
                f"part {number}: etag {etag} does not match the stored part's "
                f"{stored['etag']}; send the ETag storage returned, quotes included",
                field="parts",
            )
        if sha256 is not None and sha256 != stored["sha256"]:
            raise ApiError(
                409,
                f"part {number}: the stored bytes have sha256 {stored['sha256']}, not "
                f"{sha256}; PUT the part again",
                field="parts",
            )


def _given_parts(value: object) -> dict[int, tuple[str, str | None]]:
    fix = 'parts must be a list of {"part_number": N, "etag": "...", "sha256": "<hex>"}'
    if not isinstance(value, list) or not value:
        raise invalid("parts", f"parts is required for a multipart upload: {fix}")
    given: dict[int, tuple[str, str | None]] = {}
    for item in value:
        if not isinstance(item, dict) or set(item) - {"part_number", "etag", "sha256"}:
            raise invalid("parts", fix)
        number, etag, sha256 = (
            _part_number(item.get("part_number")),
            item.get("etag"),
            item.get("sha256"),
        )
        if number is None or not isinstance(etag, str):
            raise invalid("parts", fix)
        if sha256 is not None and not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)):
            raise invalid("parts", f"part {number}: sha256 must be 64 hexadecimal characters")
        given[number] = (etag, None if sha256 is None else sha256.lower())
    return given


def _join(core: Core, record: MultipartRecord) -> str:
    """Concatenate the parts into the upload's file; the whole object's sha256."""
    temp = core.media_root / "tmp" / new_id("join")
    digest = hashlib.sha256()
    try:
        with temp.open("wb") as out:
            for number in range(1, record.count + 1):
                with core.multipart.part_file(record.upload_id, number).open("rb") as part:
                    while chunk := part.read(_COPY_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        os.replace(temp, core.upload_file(record.upload_id))
    finally:
        temp.unlink(missing_ok=True)
    return digest.hexdigest()


__all__ = [
    "assemble",
    "init_answer",
    "put_part",
    "refresh_parts",
    "show_upload",
    "wants_parts",
]

"""Multipart uploads (contract version 2): the Gateway endpoints and the part PUTs.

With ``multipart_threshold`` set, ``init`` for a ``size`` strictly above it answers
``part_size`` and one signed URL per part instead of one ``upload_url``. Each part is a
signed PUT under the single-PUT rules (credentials 400, bad or expired signature 403, no
Content-Length 411, the exact part length), fault injection included; a part of an upload
that no longer exists gets S3's ``404 NoSuchUpload``. ``POST /api/media/upload/parts``
re-signs parts (and extends the upload's life, as a client still working on it shows it is
alive, until it expired: ``410`` is final); ``GET /api/media/upload/{upload_id}`` lists the
stored parts. ``complete`` is in ``_complete``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ._core import Core, core_of, idempotent_post, refuse_unknown
from ._errors import ApiError, invalid, json_response
from ._idempotency import Answer
from ._multipart_state import MultipartRecord, plan_part_size
from ._signing import signed_query
from ._state import Upload
from ._storage import StorageError, Target, serve_put
from ._wire import rfc3339

_REFRESH_FIELDS = ("upload_id", "part_numbers")


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
        query = signed_query(core.secret, path, expires, size)
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


def refuse_expired(core: Core, upload: Upload, *, deadline: bool = True) -> None:
    """``410`` for an upload that answered ``410`` before (final: nothing revives it) or,
    with ``deadline``, is past its ``expires_at`` (which makes it so). Refreshing part URLs
    passes ``deadline=False``: it may extend an upload that never answered ``410``, as the
    URLs and the upload expire together."""
    if not upload.expired and not (deadline and core.clock() > upload.expires_at):
        return
    if not upload.expired:
        upload.expired = True
        core.state.save_upload(upload)
    raise ApiError(
        410,
        f"upload {upload.upload_id!r} expired at {rfc3339(upload.expires_at)}; "
        "start a new one with upload/init",
        field="upload_id",
    )


# -- GET /api/media/upload/{upload_id} ---------------------------------------------------------


async def show_upload(request: web.Request) -> web.Response:
    """Handle ``GET /api/media/upload/{upload_id}``: the parts storage holds."""
    core = core_of(request)
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
    refuse_expired(core, upload, deadline=False)  # 410 is final: no refresh revives it
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


def part_number(value: object) -> int | None:
    """A JSON integer >= 1 (``3.0`` is the integer 3), else None."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


def _part_numbers(value: object, record: MultipartRecord) -> list[int]:
    fix = f"part_numbers must be a non-empty list of part numbers from 1 to {record.count}"
    numbers = [part_number(n) for n in value] if isinstance(value, list) else []
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
    if record is None or upload.media_ref is not None or upload.expired:
        raise _no_such_upload()
    raw = request.match_info["part_number"]
    number = int(raw) if raw.isdigit() else 0
    length = record.part_length(number)
    if length is None:
        raise StorageError(403, "SignatureDoesNotMatch", "No such part was signed.")

    def stored(sha256: str) -> str:
        # Aborted or completed while the body streamed: the part belongs to nothing.
        if core.multipart.records.get(upload.upload_id) is not record or upload.media_ref:
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


__all__ = [
    "init_answer",
    "part_number",
    "put_part",
    "refresh_parts",
    "refuse_expired",
    "show_upload",
    "wants_parts",
]

"""``POST /api/media/upload/init`` and ``/complete``: the Gateway side of media uploads.

``init`` records the declared file and hands out a pre-signed PUT URL on the separate
storage listener. ``complete`` checks what the storage PUT stored (size, and sha256 when
given at init or complete) and turns it into a ``media_ref``. Every completed upload gets
its own ``media_ref``; completing the same upload again returns the same one. An ``init``
whose sha256 and size match bytes already completed answers ``200`` with that finished
upload instead (contract version 3, "content already held"): nothing is sent twice.
"""

from __future__ import annotations

import os
import re
from typing import Any

from aiohttp import web

from ._core import Core, idempotent_post, refuse_unknown
from ._errors import ApiError, invalid, json_response
from ._idempotency import Answer
from ._multipart import assemble, init_answer, wants_parts
from ._signing import signed_query
from ._state import Media, Upload
from ._wire import new_id, rfc3339

# Patterns shared with the OpenAPI document (ECMA-262 and Python agree on these).
SHA256_PATTERN = "^[0-9a-fA-F]{64}$"
CONTENT_TYPE_PATTERN = r"^[A-Za-z0-9_.+-]+/[A-Za-z0-9_.+-]+([ \t]*;[ -~]*)?$"
FILENAME_PATTERN = r"^[^/\\\x00-\x1f\x7f]+$"
MAX_FILENAME = 255
_SHA256 = re.compile(SHA256_PATTERN)
_CONTENT_TYPE = re.compile(CONTENT_TYPE_PATTERN)
_FILENAME = re.compile(FILENAME_PATTERN)
_INIT_FIELDS = ("filename", "content_type", "size", "sha256")
_COMPLETE_FIELDS = ("upload_id", "sha256", "parts")


async def init_upload(request: web.Request) -> web.Response:
    """Handle ``POST /api/media/upload/init``."""
    return await idempotent_post(request, _init)


async def complete_upload(request: web.Request) -> web.Response:
    """Handle ``POST /api/media/upload/complete``."""
    return await idempotent_post(request, _complete)


def _sha256(body: dict[str, Any]) -> str | None:
    value = body.get("sha256")
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise invalid("sha256", "sha256 must be 64 hexadecimal characters")
    return value.lower()


def _check_filename(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_FILENAME:
        raise invalid("filename", "filename is required: a non-empty string of at most 255 chars")
    if not _FILENAME.fullmatch(value):
        raise invalid(
            "filename",
            "filename must be a bare name, without path separators or control characters",
        )
    return value


def _check_size(value: object, limit: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON has one number type: 5.0 is the integer 5
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid("size", "size is required: the file's length in bytes, an integer >= 0")
    if value > limit:
        raise ApiError(
            413, f"size {value} is above the upload limit of {limit} bytes", field="size"
        )
    return value


async def _init(core: Core, body: dict[str, Any]) -> Answer:
    refuse_unknown(body, _INIT_FIELDS)
    filename = _check_filename(body.get("filename"))
    content_type = body.get("content_type")
    if not isinstance(content_type, str) or not _CONTENT_TYPE.fullmatch(content_type):
        raise invalid("content_type", "content_type is required: a media type like image/png")
    size = _check_size(body.get("size"), core.settings.max_upload_size)
    sha256 = _sha256(body)
    held = None if sha256 is None else core.state.held.get((sha256, size))
    if held is not None:
        core.stats.uploads_deduplicated += 1
        named = {"filename": filename, "content_type": content_type, "deduplicated": True}
        return Answer(json_response(held.public() | named))
    expires = int(core.clock() + core.settings.upload_ttl)
    upload = Upload(new_id("upl"), filename, content_type, size, sha256, float(expires))
    core.state.save_upload(upload)
    core.stats.uploads_initiated += 1
    if wants_parts(core, size):
        return Answer(init_answer(core, upload))
    path = f"/storage/{upload.upload_id}"
    query = signed_query(core.state.secret, path, expires, size)
    return Answer(
        json_response(
            {
                "upload_id": upload.upload_id,
                "upload_url": f"{core.storage_url}{path}?{query}",
                "method": "PUT",
                "headers": {"Content-Type": content_type},
                "expires_at": rfc3339(expires),
            },
            status=201,
        )
    )


async def _complete(core: Core, body: dict[str, Any]) -> Answer:
    refuse_unknown(body, _COMPLETE_FIELDS)
    upload_id = body.get("upload_id")
    if not isinstance(upload_id, str) or not upload_id:
        raise invalid("upload_id", "upload_id is required: the id returned by upload/init")
    given = _sha256(body)
    upload = core.state.uploads.get(upload_id)
    if upload is None:
        raise ApiError(
            404, f"no upload {upload_id!r}; start one with upload/init", field="upload_id"
        )
    if upload.media_ref is not None:
        return Answer(_completed_again(core, upload, given))
    if core.clock() > upload.expires_at:
        raise ApiError(
            410,
            f"upload {upload_id!r} expired at {rfc3339(upload.expires_at)}; "
            "start a new one with upload/init",
            field="upload_id",
        )
    await assemble(core, upload, body)
    _check_stored(core, upload, given)
    media = Media(
        new_id("mref"), upload.filename, upload.content_type, upload.size, upload.put_sha256 or ""
    )
    os.replace(core.upload_file(upload_id), core.media_file(media.media_ref))
    upload.media_ref = media.media_ref
    core.state.save_media(media)
    core.state.save_upload(upload)
    core.stats.uploads_completed += 1
    return Answer(json_response(media.public()))


def _check_stored(core: Core, upload: Upload, given: str | None) -> None:
    stored = core.upload_file(upload.upload_id)
    if upload.put_sha256 is None or not stored.exists():
        raise ApiError(
            409,
            f"upload {upload.upload_id!r} has no complete PUT yet; PUT exactly "
            f"{upload.size} bytes to the upload_url first",
            field="upload_id",
        )
    if stored.stat().st_size != upload.size:
        raise ApiError(
            409,
            f"stored size {stored.stat().st_size} does not match the declared size {upload.size}",
            field="size",
        )
    for expected in (upload.sha256, given):
        if expected is not None and expected != upload.put_sha256:
            raise ApiError(
                409,
                f"the stored bytes have sha256 {upload.put_sha256}, not "
                f"{expected}; PUT the file again",
                field="sha256",
            )


def _completed_again(core: Core, upload: Upload, given: str | None) -> web.Response:
    media = core.state.media[upload.media_ref or ""]
    if upload.put_sha256 != media.sha256 or given not in (None, media.sha256):
        raise ApiError(
            409,
            f"upload {upload.upload_id!r} was already completed with different "
            "data; start a new upload",
            field="upload_id",
        )
    return json_response(media.public())

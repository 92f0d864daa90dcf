"""``POST /api/media/upload/init``: the Gateway side of starting a media upload.

``init`` records the declared file and hands out a pre-signed PUT URL on the separate
storage listener (or part URLs, see ``_multipart``); ``complete`` is in ``_complete``. An
``init`` whose sha256 and size match bytes already completed answers ``200`` with that
finished upload instead (contract version 3, "content already held"): nothing is sent twice.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from ._core import Core, idempotent_post, refuse_unknown
from ._errors import ApiError, invalid, json_response
from ._idempotency import Answer
from ._multipart import init_answer, wants_parts
from ._signing import signed_query
from ._state import Upload
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


async def init_upload(request: web.Request) -> web.Response:
    """Handle ``POST /api/media/upload/init``."""
    return await idempotent_post(request, _init)


def sha256_field(body: dict[str, Any]) -> str | None:
    """The body's optional ``sha256`` in lower case; 422 unless 64 hexadecimal characters."""
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
    sha256 = sha256_field(body)
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
    query = signed_query(core.secret, path, expires, size)
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

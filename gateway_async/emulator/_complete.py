"""``POST /api/media/upload/complete``: one upload becomes one ``media_ref``, atomically.

A complete is a transaction over the upload's record, its parts and the stored object, as
S3's CompleteMultipartUpload is:

* the completes of one upload run one at a time (a lock per upload), so concurrent
  completes all answer the same ``media_ref``;
* every complete checks its body against what storage holds, before and after the upload
  completed: the same body again gets the same ``media_ref``, another one ``409``;
* nothing changes until every check passed: the parts are joined into a temporary file and
  its sha256 is checked first, so a ``409`` leaves the parts held and listed;
* the finished object is linked into place and fsynced before one SQLite transaction
  records it, and the parts are removed only after that commit: a process killed at any
  point leaves the upload completed or still completable (:meth:`Core.recover` sweeps what
  a kill left behind);
* ``410`` is final: an expired upload never completes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from ._core import Core, idempotent_post, refuse_unknown
from ._errors import INVALID_PART, ApiError, invalid, json_response
from ._idempotency import Answer
from ._multipart import part_number, refuse_expired
from ._multipart_state import MultipartRecord
from ._state import Media, Upload
from ._uploads import sha256_field
from ._wire import new_id

GivenPart = tuple[int, str, str | None]  # (part_number, etag, sha256 or None)
_FIELDS = ("upload_id", "sha256", "parts")
_PART_FIELDS = frozenset({"part_number", "etag", "sha256"})
_COPY_CHUNK = 1024 * 1024


async def complete_upload(request: web.Request) -> web.Response:
    """Handle ``POST /api/media/upload/complete``."""
    return await idempotent_post(request, _complete)


async def _complete(core: Core, body: dict[str, Any]) -> Answer:
    refuse_unknown(body, _FIELDS)
    upload_id = body.get("upload_id")
    if not isinstance(upload_id, str) or not upload_id:
        raise invalid("upload_id", "upload_id is required: the id returned by upload/init")
    given = sha256_field(body)
    async with core.completing.hold(upload_id):
        upload = core.state.uploads.get(upload_id)
        if upload is None:
            raise ApiError(
                404, f"no upload {upload_id!r}; start one with upload/init", field="upload_id"
            )
        record, parts = _requested_parts(core, upload, body)
        if upload.media_ref is not None:
            return Answer(_completed_again(core, upload, record, parts, given))
        refuse_expired(core, upload)
        if record is None:
            media = _finish_single(core, upload, given)
        else:
            media = await _finish_multipart(core, upload, record, parts, given)
    core.stats.uploads_completed += 1
    return Answer(json_response(media.public()))


# -- the body's parts ------------------------------------------------------------------------


def _requested_parts(
    core: Core, upload: Upload, body: dict[str, Any]
) -> tuple[MultipartRecord | None, list[GivenPart]]:
    """The upload's multipart record (None for a single-PUT upload) and the well-formed
    ``parts`` of the body (422 otherwise); a single-PUT upload must not send ``parts``."""
    record = core.multipart.records.get(upload.upload_id)
    if record is not None:
        return record, _given_parts(body.get("parts"))
    if body.get("parts") is not None:
        _given_parts(body["parts"])  # malformed: 422; well-formed: the wrong upload, 409
        raise ApiError(
            409,
            "parts is only for multipart uploads (init answered parts); complete this "
            "one without parts",
            field="parts",
        )
    return None, []


def _given_parts(value: object) -> list[GivenPart]:
    fix = 'parts must be a list of {"part_number": N, "etag": "...", "sha256": "<hex>"}'
    if not isinstance(value, list) or not value:
        raise invalid("parts", f"parts is required for a multipart upload: {fix}")
    given = []
    for item in value:
        if not isinstance(item, dict) or set(item) - _PART_FIELDS:
            raise invalid("parts", fix)
        number, etag, sha256 = (
            part_number(item.get("part_number")),
            item.get("etag"),
            item.get("sha256"),
        )
        if number is None or not isinstance(etag, str):
            raise invalid("parts", fix)
        try:
            sha256 = sha256_field({"sha256": sha256})
        except ApiError:
            raise invalid(
                "parts", f"part {number}: sha256 must be 64 hexadecimal characters"
            ) from None
        given.append((number, etag, sha256))
    return given


def _bad_part(message: str) -> ApiError:
    return ApiError(409, message, field="parts", code=INVALID_PART)


def _check_held(record: MultipartRecord, given: list[GivenPart]) -> None:
    """409 ``invalid_part`` unless ``given`` lists every part once, in ascending order,
    each held by storage with this ETag (and this sha256 when one is sent)."""
    numbers = [number for number, _, _ in given]
    if numbers != sorted(set(numbers)):
        raise _bad_part("parts must list each part once, in ascending part_number order")
    for number, etag, sha256 in given:
        stored = record.parts.get(str(number))
        if stored is None:
            held = ", ".join(str(p["part_number"]) for p in record.listing()) or "none"
            raise _bad_part(
                f"part {number} is not held by storage (upload of {record.count} parts; "
                f"held: {held}); PUT it, then complete"
            )
        if etag != stored["etag"]:
            raise _bad_part(
                f"part {number}: etag {etag} does not match the stored part's "
                f"{stored['etag']}; send the ETag storage returned, quotes included"
            )
        if sha256 is not None and sha256 != stored["sha256"]:
            raise _bad_part(
                f"part {number}: the stored bytes have sha256 {stored['sha256']}, not "
                f"{sha256}; PUT the part again"
            )
    missing = next((n for n in range(1, record.count + 1) if n not in numbers), None)
    if missing is not None:
        raise _bad_part(f"part {missing} of {record.count} is missing from parts; list every part")


def _check_sha256(upload: Upload, actual: str, given: str | None) -> None:
    for expected in (upload.sha256, given):
        if expected is not None and expected != actual:
            raise ApiError(
                409,
                f"the stored bytes have sha256 {actual}, not {expected}; PUT the file again",
                field="sha256",
            )


# -- completing --------------------------------------------------------------------------------


def _finish_single(core: Core, upload: Upload, given: str | None) -> Media:
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
    _check_sha256(upload, upload.put_sha256, given)
    media = _publish(core, upload, stored, upload.put_sha256)
    stored.unlink(missing_ok=True)  # after the commit: a kill before it keeps the upload whole
    return media


async def _finish_multipart(
    core: Core, upload: Upload, record: MultipartRecord, given: list[GivenPart], wanted: str | None
) -> Media:
    _check_held(record, given)
    held = {str(number): dict(record.parts[str(number)]) for number, _, _ in given}
    temp = core.media_root / "tmp" / new_id("join")
    try:
        whole, digests = await asyncio.to_thread(_join, core, record, temp)
        for number, digest in enumerate(digests, start=1):
            if digest != held[str(number)]["sha256"]:  # a part PUT landed while joining
                raise _bad_part(
                    f"part {number} was stored again while completing; complete again with "
                    "the ETags storage holds now"
                )
        _check_sha256(upload, whole, wanted)
        snapshot = MultipartRecord(record.upload_id, record.size, record.part_size, held)
        media = _publish(core, upload, temp, whole, lambda: core.multipart.write(snapshot))
    finally:
        temp.unlink(missing_ok=True)
    record.parts = held  # the listing shows exactly the parts the object was made of
    core.multipart.drop_parts(upload.upload_id)  # only now: the object is durable
    return media


def _join(core: Core, record: MultipartRecord, dest: Path) -> tuple[str, list[str]]:
    """Concatenate the parts into ``dest`` 1 MiB at a time (fsynced); the whole object's
    sha256 and each part's, as read."""
    whole, digests = hashlib.sha256(), []
    with dest.open("wb") as out:
        for number in range(1, record.count + 1):
            digest = hashlib.sha256()
            try:
                with core.multipart.part_file(record.upload_id, number).open("rb") as part:
                    while chunk := part.read(_COPY_CHUNK):
                        whole.update(chunk)
                        digest.update(chunk)
                        out.write(chunk)
            except FileNotFoundError:
                raise _bad_part(f"part {number} is no longer held; PUT it again") from None
            digests.append(digest.hexdigest())
        out.flush()
        os.fsync(out.fileno())
    return whole.hexdigest(), digests


def _publish(
    core: Core,
    upload: Upload,
    source: Path,
    sha256: str,
    effect: Callable[[], None] | None = None,
) -> Media:
    """Link ``source`` into place as a new media object, then record the completion in one
    transaction (the link is undone if the commit fails)."""
    media = Media(new_id("mref"), upload.filename, upload.content_type, upload.size, sha256)
    target = core.media_file(media.media_ref)
    os.link(source, target)
    try:
        core.state.complete(upload, media, effect)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return media


def _completed_again(
    core: Core,
    upload: Upload,
    record: MultipartRecord | None,
    given: list[GivenPart],
    wanted: str | None,
) -> web.Response:
    """The same ``media_ref`` for a body that matches what the upload was completed with."""
    media = core.state.media[upload.media_ref or ""]
    if record is not None:
        _check_held(record, given)
    if upload.put_sha256 != media.sha256 or wanted not in (None, media.sha256):
        raise ApiError(
            409,
            f"upload {upload.upload_id!r} was already completed with different "
            "data; start a new upload",
            field="upload_id",
        )
    return json_response(media.public())

"""The identity of a call: one function that every resumable path derives its keys from.

An ``Idempotency-Key`` names one logical call. For work that must run exactly once across
processes and machines (``job=`` in the ingest, the CLI and the Ray helpers), the key is
derived from the job and the call's identity, never drawn at random, so any process that
redoes the same call sends the same key and the Gateway replays its first answer.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Final

from ._errors import InvalidRequestError

__all__ = ["check_job", "idempotency_key"]

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")


def idempotency_key(job: str, material: object) -> str:
    """The Idempotency-Key of one call in ``job``: the same job and material give the
    same key in every process on every machine, so a call made again replays its answer.

    ``material`` is the call's identity: ``str`` or ``bytes`` as given, anything else as
    canonical JSON (sorted keys). The key is the job (made header-safe, at most 64
    characters) and a SHA-256 hex digest, well within the contract's 255 characters.
    """
    check_job(job)
    if isinstance(material, bytes):
        data = material
    elif isinstance(material, str):
        data = material.encode()
    else:
        data = _canonical(material).encode()
    digest = hashlib.sha256(job.encode() + b"\0" + data).hexdigest()
    return f"{_UNSAFE.sub('_', job)[:64]}-{digest}"


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def check_job(job: object) -> str:
    """``job`` itself, or ``InvalidRequestError`` naming the argument and the fix."""
    if not isinstance(job, str) or not job.strip():
        raise InvalidRequestError(
            "job: name the job with a non-empty string, e.g. job='photos-2026-12'", field="job"
        )
    return job

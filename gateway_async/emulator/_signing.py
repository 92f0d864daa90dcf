"""Pre-signed storage URLs: an HMAC-SHA256 over the method, the raw path, the raw signed
query (expiry included) and the declared size, keyed by a per-emulator secret.

The signed query carries a ``%2F``-encoded credential scope, as S3's ``X-Amz-Credential``
does: a client that decodes or re-encodes the URL before sending it breaks the signature,
just as it would against real object storage.
"""

from __future__ import annotations

import hashlib
import hmac

CREDENTIAL = "X-Emu-Credential=emulator%2Fstorage%2Fput"
EXPIRES = "X-Emu-Expires"
SIGNATURE = "X-Emu-Signature"


def _sign(secret: bytes, path: str, unsigned: str, size: int) -> str:
    text = f"PUT\n{path}\n{unsigned}\n{size}"
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


def signed_query(secret: bytes, path: str, expires: int, size: int) -> str:
    """The query string of a pre-signed PUT URL for ``path``."""
    unsigned = f"{CREDENTIAL}&{EXPIRES}={expires}"
    return f"{unsigned}&{SIGNATURE}={_sign(secret, path, unsigned, size)}"


def verify(secret: bytes, raw_path: str, size: int) -> int | None:
    """The expiry of a correctly signed raw request target, or None when tampered with."""
    path, _, query = raw_path.partition("?")
    unsigned, sep, signature = query.rpartition(f"&{SIGNATURE}=")
    if not sep or not hmac.compare_digest(signature, _sign(secret, path, unsigned, size)):
        return None
    for pair in unsigned.split("&"):
        name, _, value = pair.partition("=")
        if name == EXPIRES and value.isdigit():
            return int(value)
    return None

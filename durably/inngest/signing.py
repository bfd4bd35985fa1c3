"""The protocol's signatures (INNGEST-PROTOCOL.md §1.4, §8.2).

``X-Inngest-Signature: t=<unix seconds>&s=<hex HMAC-SHA256(key, body + t)>``, where the key
is the hex text after the ``signkey-<env>-`` prefix (used as text, not decoded) and the body
is the JSON in RFC 8785 canonical form (the SDKs canonicalize before checking). The bearer
token an app sends to the server is ``sha256(bytes.fromhex(key))``, bare (Python) or with the
prefix kept (TypeScript).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

_PREFIX = re.compile(r"^signkey-\w+-")


def key_text(signing_key: str) -> str:
    return _PREFIX.sub("", signing_key.strip())


def sign(body: bytes, signing_key: str, now: float | None = None) -> str:
    t = str(int(time.time() if now is None else now))
    mac = hmac.new(key_text(signing_key).encode(), body + t.encode(), hashlib.sha256).hexdigest()
    return f"t={t}&s={mac}"


def verify(body: bytes, header: str | None, signing_key: str) -> bool:
    """Whether ``header`` signs ``body`` (raw bytes, as the SDK signs its answers) with the key."""
    if not header:
        return False
    parts = dict(p.split("=", 1) for p in header.split("&") if "=" in p)
    t, s = parts.get("t"), parts.get("s")
    if not t or not s:
        return False
    mac = hmac.new(key_text(signing_key).encode(), body + t.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, s)


def bearer_ok(authorization: str | None, signing_key: str) -> bool:
    """Whether an app's ``Authorization: Bearer`` holds the hash of the signing key."""
    if not authorization or not authorization.lower().startswith("bearer "):
        return False
    token = _PREFIX.sub("", authorization[7:].strip())
    try:
        expected = hashlib.sha256(bytes.fromhex(key_text(signing_key))).hexdigest()
    except ValueError:
        return False
    return hmac.compare_digest(token, expected)


def canonical(value: object) -> bytes:
    """The RFC 8785 (JCS) bytes of a JSON value: what the SDKs check a signature against."""
    import jcs  # type: ignore[import-untyped]

    return jcs.canonicalize(value)

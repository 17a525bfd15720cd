"""The signature of a webhook delivery (pure: no I/O).

``Trellis-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`` keyed
with the webhook's secret. Signing the time with the body lets a receiver refuse an old
delivery replayed later (``verify``'s ``tolerance``); the ``v1`` label leaves room for
another scheme beside it without breaking receivers.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Trellis-Signature"
EVENT_ID_HEADER = "Trellis-Event-Id"
DEFAULT_TOLERANCE = 300  # seconds a receiver should accept a signature for


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Trellis-Signature`` header's value for ``body`` sent now (or at ``timestamp``)."""
    moment = int(time.time()) if timestamp is None else timestamp
    return f"t={moment},v1={signature(secret, moment, body)}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds of now.

    What a receiver does (docs/webhooks.md shows it standalone); the tests' receiver uses it.
    """
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    stamp = parts.get("t", "")
    if not stamp.isdigit() or "v1" not in parts:
        return False
    moment = time.time() if now is None else now
    if abs(moment - int(stamp)) > tolerance:
        return False
    return hmac.compare_digest(parts["v1"], signature(secret, int(stamp), body))

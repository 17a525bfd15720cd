"""Secrets the platform must use again later (a webhook's signing secret), sealed at rest.

A secret that is only *checked* (a password, an API token) is hashed. A webhook's secret
must sign every delivery, so it is encrypted instead: Fernet (AES-128-CBC with an
HMAC-SHA256, from ``cryptography``) under a key derived from the app's ``SECRET_KEY`` with
HKDF, so a database dump alone does not give the secrets away, and no second key has to
be managed. Changing ``SECRET_KEY`` makes the sealed secrets unreadable: rotate them then.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# Binds the derived key to its one use: another purpose derives another key.
_PURPOSE = b"trellis sealed secrets v1"


class SealBroken(Exception):
    """A sealed secret that this ``SECRET_KEY`` cannot open (the key changed, or the text)."""


def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE).derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def seal(text: str, secret_key: str) -> str:
    """``text`` encrypted and authenticated under a key derived from ``secret_key``."""
    return _fernet(secret_key).encrypt(text.encode()).decode("ascii")


def unseal(sealed: str, secret_key: str) -> str:
    """The text ``seal`` sealed; ``SealBroken`` when this key cannot open it."""
    try:
        return _fernet(secret_key).decrypt(sealed.encode("ascii")).decode()
    except (InvalidToken, ValueError) as exc:
        raise SealBroken("the sealed secret cannot be opened with this SECRET_KEY") from exc


def hint(secret: str, prefix: str) -> str:
    """What may be shown of a secret once it was handed out: its prefix and last 4 characters."""
    return f"{prefix}…{secret[-4:]}"

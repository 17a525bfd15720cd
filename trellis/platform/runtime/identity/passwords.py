"""Passwords: what we accept, hashing one with scrypt, and checking one against its hash."""

from __future__ import annotations

import datetime as dt
import secrets
from functools import cache
from typing import TYPE_CHECKING, Any

from werkzeug.security import check_password_hash, generate_password_hash

from trellis.config import password_scrypt_n
from trellis.exceptions import (
    ValidationFailed,
)
from trellis.platform.messages import N_
from trellis.platform.runtime.models import (
    User,
)

if TYPE_CHECKING:
    pass


def hash_password(password: str) -> str:
    """The stored form of ``password``: werkzeug's scrypt (r=8, p=1) at the configured cost
    n (``trellis.config.password_scrypt_n``; 2¹⁵ unless a test suite lowers it)."""
    return generate_password_hash(password, method=f"scrypt:{password_scrypt_n()}:8:1")


@cache
def dummy_hash() -> str:
    """Made on first use, not at import: scrypt is deliberately slow."""
    return hash_password(secrets.token_urlsafe(16))


LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
MIN_PASSWORD_LENGTH = 8


_PASSWORD_RULE = [
    {
        "field": "password",
        "message": N_("at least %(limit)s characters", limit=MIN_PASSWORD_LENGTH),
    }
]


def check_password(password: Any) -> str:
    """The password, when it is one we accept; ``ValidationFailed`` otherwise."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(N_("password too short"), _PASSWORD_RULE)
    if len(password) > 1000:
        raise ValidationFailed(
            N_("password too long"),
            [{"field": "password", "message": N_("at most %(limit)s characters", limit=1000)}],
        )
    return password


def verify_password(user: User, password: str) -> bool:
    """Whether ``password`` matches the user's hash; False for a user without a password."""
    return bool(user.password_hash) and check_password_hash(str(user.password_hash), password)

"""Passwords: what we accept, and checking one against its scrypt hash."""

from __future__ import annotations

import datetime as dt
import secrets
from functools import cache
from typing import TYPE_CHECKING, Any

from werkzeug.security import check_password_hash, generate_password_hash

from trellis.exceptions import (
    ValidationFailed,
)
from trellis.platform.runtime.models import (
    User,
)

if TYPE_CHECKING:
    pass


@cache
def dummy_hash() -> str:
    """Made on first use, not at import: scrypt is deliberately slow."""
    return generate_password_hash(secrets.token_urlsafe(16))


LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
MIN_PASSWORD_LENGTH = 8


_PASSWORD_RULE = [{"field": "password", "message": f"at least {MIN_PASSWORD_LENGTH} characters"}]


def check_password(password: Any) -> str:
    """The password, when it is one we accept; ``ValidationFailed`` otherwise."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed("password too short", _PASSWORD_RULE)
    if len(password) > 1000:
        raise ValidationFailed(
            "password too long", [{"field": "password", "message": "at most 1000 characters"}]
        )
    return password


def verify_password(user: User, password: str) -> bool:
    """Whether ``password`` matches the user's hash; False for a user without a password."""
    return bool(user.password_hash) and check_password_hash(str(user.password_hash), password)

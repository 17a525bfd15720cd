"""Signing in with e-mail and password, slowed and then locked after repeated failures."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import sqlalchemy as sa
from werkzeug.security import check_password_hash

from trellis.exceptions import (
    AuthenticationRequired,
    TooManyAttempts,
)
from trellis.platform.runtime.identity.passwords import dummy_hash, verify_password
from trellis.platform.runtime.models import (
    User,
    as_utc,
    utcnow,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


SLOW_AFTER = 3  # failures before each next attempt has to wait
LOCK_AFTER = 10  # failures before the account locks
LOCK_FOR = dt.timedelta(minutes=15)


def sign_in(session: Session, email: str, password: str) -> User:
    """Check a password, slowing down and locking after repeated failures.

    The failure counters are written by the caller's commit even when this raises,
    so the caller must commit after a failed attempt too.
    """
    user = session.scalar(sa.select(User).where(User.email == (email or "").strip().lower()))
    now = utcnow()
    if user is not None:
        locked_until = as_utc(user.locked_until) if user.locked_until else None
        if locked_until and locked_until > now:
            wait = int((locked_until - now).total_seconds()) + 1
            raise TooManyAttempts(
                "too many failed sign-ins; the account is locked for a while", wait
            )
        last_failed = as_utc(user.last_failed_at) if user.last_failed_at else None
        if user.failed_logins >= SLOW_AFTER and last_failed is not None:
            ready_at = last_failed + dt.timedelta(seconds=2 ** (user.failed_logins - SLOW_AFTER))
            if ready_at > now:
                wait = int((ready_at - now).total_seconds()) + 1
                raise TooManyAttempts("too many failed sign-ins; wait before trying again", wait)
    if user is None:
        # Spend the time a real check takes, so timing does not tell who has an account.
        check_password_hash(dummy_hash(), password or "")
    if user is None or not user.is_active or not verify_password(user, password or ""):
        if user is not None:
            user.failed_logins += 1
            user.last_failed_at = now
            if user.failed_logins >= LOCK_AFTER:
                user.locked_until = now + LOCK_FOR
                user.failed_logins = 0
        raise AuthenticationRequired("wrong e-mail or password")
    user.failed_logins = 0
    user.last_failed_at = None
    user.locked_until = None
    return user

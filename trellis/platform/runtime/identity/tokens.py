"""API tokens.

Tokens are 256-bit random strings shown once; only their SHA-256 is stored (a
slow hash buys nothing for a secret of that entropy, and a fast one keeps every
request cheap).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from functools import cache
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from trellis.exceptions import (
    AuthenticationRequired,
    NotFound,
    ValidationFailed,
)
from trellis.platform.metadata.fieldtypes import INT64_MAX
from trellis.platform.runtime.identity.caller import (
    USERS,
    Identity,
    revision_column,
    role_names_column,
    role_tuple,
)
from trellis.platform.runtime.models import ApiToken, User, as_utc, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

_TOKENS = cast("sa.Table", ApiToken.__table__)


TOKEN_PREFIX = "trl_"
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
MAX_TOKEN_DAYS = 3650


def hash_token(token: str) -> str:
    """The SHA-256 hex digest of a token: what is stored and looked up, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    session: Session, email: str, *, name: str = "", expires_at: dt.datetime | None = None
) -> str:
    """Create an API token for ``email`` and return it (the only time it is visible)."""
    user = session.scalar(sa.select(User).where(User.email == email.strip().lower()))
    if user is None or not user.is_active:
        raise NotFound(f"no active user {email!r}")
    return new_token(session, user.id, name, expires_at)[1]


def new_token(
    session: Session, user_id: int, name: str, expires_at: dt.datetime | None
) -> tuple[ApiToken, str]:
    """Mint a token: the row (holding only its hash) and the token itself, shown once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user_id,
        name=str(name or "")[:120],
        token_hash=hash_token(token),
        prefix=token[:10],
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, token


def authenticate_token(session: Session, authorization: str | None) -> Identity:
    """The identity behind an ``Authorization: Bearer`` header, or ``AuthenticationRequired``.

    One query answers everything a request needs to start: the token's state, its
    user, the user's role names and the metadata revision.
    """
    if not authorization or not authorization.startswith("Bearer "):
        raise AuthenticationRequired("send an API token: Authorization: Bearer <token>")
    token = authorization[len("Bearer ") :].strip()
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise AuthenticationRequired("the token is not valid")
    row = session.execute(_identity_statement(), {"token_hash": hash_token(token)}).first()
    if row is None:
        raise AuthenticationRequired("the token is not valid")
    (
        token_id,
        expires_at,
        revoked_at,
        last_used_at,
        user_id,
        email,
        is_admin,
        is_active,
        partner_id,
        role_names,
        meta_revision,
    ) = row
    now = utcnow()
    if revoked_at is not None or not is_active or (expires_at and as_utc(expires_at) <= now):
        raise AuthenticationRequired("the token is revoked or expired")
    return Identity(
        token_id=token_id,
        user_id=user_id,
        email=email,
        is_admin=bool(is_admin),
        partner_id=partner_id,
        roles=role_tuple(role_names),
        revision=meta_revision or 0,
        needs_touch=last_used_at is None or now - as_utc(last_used_at) > LAST_USED_RESOLUTION,
    )


@cache
def _identity_statement() -> sa.Select[Any]:
    """Built once: it runs on every API request."""
    roles = role_names_column()
    revision = revision_column()
    tokens, users = _TOKENS.c, USERS.c
    return (
        sa.select(
            tokens.id,
            tokens.expires_at,
            tokens.revoked_at,
            tokens.last_used_at,
            users.id,
            users.email,
            users.is_admin,
            users.is_active,
            users.partner_id,
            roles,
            revision,
        )
        .join_from(_TOKENS, USERS, users.id == tokens.user_id)
        .where(tokens.token_hash == sa.bindparam("token_hash"))
    )


def touch_token(connection: sa.Connection, token_id: int) -> None:
    """Record a token's use (outside the request's transaction, at most once a minute)."""
    connection.execute(
        sa.update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=utcnow())
    )


def create_token(
    session: Session, user_id: int, name: str, expires_in_days: Any = None
) -> tuple[ApiToken, str]:
    """A new token for the user and the token text (shown once), expiring after
    ``expires_in_days`` (an int, 1–``MAX_TOKEN_DAYS``) or never; ``ValidationFailed`` otherwise.
    """
    expires_at = None
    if expires_in_days is not None:
        if (
            isinstance(expires_in_days, bool)
            or not isinstance(expires_in_days, int)
            or not (1 <= expires_in_days <= MAX_TOKEN_DAYS)
        ):
            raise ValidationFailed(
                f"expires_in_days must be 1–{MAX_TOKEN_DAYS}",
                [{"field": "expires_in_days", "message": str(expires_in_days)}],
            )
        expires_at = utcnow() + dt.timedelta(days=expires_in_days)
    return new_token(session, user_id, name, expires_at)


def list_tokens(session: Session, user_id: int) -> list[ApiToken]:
    """The user's tokens, revoked and expired ones too, oldest first."""
    return list(
        session.scalars(
            sa.select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)
        )
    )


def revoke_token(session: Session, user_id: int, token_id: int) -> ApiToken:
    """Revoke one of the user's tokens (again is a no-op) and return it.

    Raises ``NotFound`` for an unknown id or another user's token alike.
    """
    row = session.get(ApiToken, token_id) if 1 <= token_id <= INT64_MAX else None
    if row is None or row.user_id != user_id:
        raise NotFound(f"no token with id {token_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row

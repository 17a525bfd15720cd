"""Users and API tokens.

Tokens are 256-bit random strings shown once; only their SHA-256 is stored (a
slow hash buys nothing for a secret of that entropy, and a fast one keeps every
request cheap). Passwords use werkzeug's scrypt hash.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from trellis.exceptions import AuthenticationRequired, NotFound, ValidationFailed
from trellis.platform.runtime.models import (
    ApiToken,
    MetaRevision,
    User,
    UserRole,
    as_utc,
    utcnow,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

TOKEN_PREFIX = "trl_"
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
MIN_PASSWORD_LENGTH = 8


@dataclass(frozen=True)
class TokenIdentity:
    """What one query learns from a bearer token: the user, their roles, the metadata revision."""

    token_id: int
    user_id: int
    email: str
    is_admin: bool
    partner_id: int | None
    roles: tuple[str, ...]
    revision: int
    needs_touch: bool  # last_used_at is older than LAST_USED_RESOLUTION


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(
    session: Session, email: str, password: str, *, name: str = "", is_admin: bool = False
) -> tuple[User, bool]:
    """Create the user, or update the password of an existing one. Returns (user, created)."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise ValidationFailed("invalid e-mail address", [{"field": "email", "message": email}])
    if isinstance(password, str) and len(password) < MIN_PASSWORD_LENGTH:
        # `trellis init`'s wording, which scripts may match on.
        raise ValidationFailed("password too short", _PASSWORD_RULE)
    check_password(password)
    user = session.scalar(sa.select(User).where(User.email == email))
    created = user is None
    if user is None:
        user = User(email=email, name=name or email.split("@")[0], is_admin=is_admin)
        session.add(user)
    user.password_hash = generate_password_hash(password)
    user.password_changed_at = utcnow()
    user.is_admin = user.is_admin or is_admin
    session.flush()
    return user, created


_PASSWORD_RULE = [{"field": "password", "message": f"at least {MIN_PASSWORD_LENGTH} characters"}]


def check_password(password: Any) -> str:
    """The password, when it is one we accept; ``ValidationFailed`` otherwise."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed("the password is too short", _PASSWORD_RULE)
    if len(password) > 1000:
        raise ValidationFailed("the password is too long", [{"field": "password", "message": ""}])
    return password


def verify_password(user: User, password: str) -> bool:
    return bool(user.password_hash) and check_password_hash(str(user.password_hash), password)


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


def authenticate_token(session: Session, authorization: str | None) -> TokenIdentity:
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
    return TokenIdentity(
        token_id=token_id,
        user_id=user_id,
        email=email,
        is_admin=bool(is_admin),
        partner_id=partner_id,
        roles=tuple(sorted(role_names.split(","))) if role_names else (),
        revision=meta_revision or 0,
        needs_touch=last_used_at is None or now - as_utc(last_used_at) > LAST_USED_RESOLUTION,
    )


@cache
def _identity_statement() -> sa.Select[Any]:
    """Built once: it runs on every API request."""
    roles = (
        sa.select(sa.func.aggregate_strings(UserRole.role_name, ","))
        .where(UserRole.user_id == User.id)
        .scalar_subquery()
    )
    revision = sa.select(MetaRevision.revision).where(MetaRevision.id == 1).scalar_subquery()
    return (
        sa.select(
            ApiToken.id,
            ApiToken.expires_at,
            ApiToken.revoked_at,
            ApiToken.last_used_at,
            User.id,
            User.email,
            User.is_admin,
            User.is_active,
            User.partner_id,
            roles,
            revision,
        )
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == sa.bindparam("token_hash"))
    )


def touch_token(connection: sa.Connection, token_id: int) -> None:
    """Record a token's use (outside the request's transaction, at most once a minute)."""
    connection.execute(
        sa.update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=utcnow())
    )

"""Users, roles, sign-in and tokens: who may act, and with which rights.

Roles are versioned documents like object definitions (the pure rules are in
``platform/metadata/permissions.py``); a role change bumps the metadata revision so
every process recombines the rights it cached. Sign-in failures slow the next
attempt down exponentially and then lock the account for a while.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from trellis.exceptions import (
    AuthenticationRequired,
    Conflict,
    InvalidDefinition,
    NotFound,
    TooManyAttempts,
    ValidationFailed,
)
from trellis.platform.metadata.fieldtypes import INT64_MAX
from trellis.platform.metadata.permissions import Permissions, validate_role
from trellis.platform.runtime import audit
from trellis.platform.runtime.auth import check_password, new_token, verify_password
from trellis.platform.runtime.models import (
    ApiToken,
    Role,
    RoleVersion,
    User,
    UserRole,
    as_utc,
    utcnow,
)
from trellis.platform.runtime.objects import bump_revision

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.registry import MetaRegistry


@cache
def _dummy_hash() -> str:
    """Made on first use, not at import: scrypt is deliberately slow."""
    return generate_password_hash(secrets.token_urlsafe(16))


SLOW_AFTER = 3  # failures before each next attempt has to wait
LOCK_AFTER = 10  # failures before the account locks
LOCK_FOR = dt.timedelta(minutes=15)
MAX_TOKEN_DAYS = 3650


@dataclass(frozen=True)
class Caller:
    """Who is making the request, and what they may do."""

    user_id: int
    email: str
    is_admin: bool
    partner_id: int | None
    roles: tuple[str, ...]
    permissions: Permissions  # what the caller may do (everything, for an admin)
    role_permissions: Permissions  # what their roles alone grant (to audit admin bypass)
    token_id: int | None = None


# --- roles -------------------------------------------------------------------------------


class RoleService:
    def __init__(self, session: Session, registry: MetaRegistry, author_id: int | None) -> None:
        self.session = session
        self.registry = registry
        self.author_id = author_id

    def _check(self, document: Any) -> dict[str, Any]:
        self.registry.ensure_current(self.session)
        problems = validate_role(document, self.registry.documents())
        if problems:
            raise InvalidDefinition(
                f"the role has {len(problems)} problem(s)", [p.as_detail() for p in problems]
            )
        return dict(document)

    def create(self, document: Any) -> tuple[dict[str, Any], int]:
        document = self._check(document)
        name = document["x-name"]
        if self.session.get(Role, name) is not None:
            raise Conflict(f"role {name!r} already exists; PUT /roles/{name} changes it")
        self.session.add(Role(name=name, current_version=1))
        self._write_version(name, 1, document)
        return document, 1

    def update(self, name: str, document: Any) -> tuple[dict[str, Any], int, bool]:
        row = self.session.get(Role, name, with_for_update=True)
        if row is None:
            raise NotFound(f"no role named {name!r}")
        if isinstance(document, dict) and document.get("x-name", name) != name:
            raise ValidationFailed("x-name cannot change", [{"field": "/x-name", "message": name}])
        document = self._check(document)
        if document == self.document(name, row.current_version):
            return document, row.current_version, False
        row.current_version += 1
        row.updated_at = utcnow()
        self._write_version(name, row.current_version, document)
        return document, row.current_version, True

    def document(self, name: str, version: int | None = None) -> dict[str, Any]:
        row = self.session.get(Role, name)
        if row is None:
            raise NotFound(f"no role named {name!r}")
        found = self.session.execute(
            sa.select(RoleVersion.document).where(
                RoleVersion.role_name == name,
                RoleVersion.version == (version or row.current_version),
            )
        ).scalar()
        if found is None:
            raise NotFound(f"role {name!r} has no version {version}")
        return dict(found)

    def versions(self, name: str) -> list[RoleVersion]:
        if self.session.get(Role, name) is None:
            raise NotFound(f"no role named {name!r}")
        return list(
            self.session.scalars(
                sa.select(RoleVersion)
                .where(RoleVersion.role_name == name)
                .order_by(RoleVersion.version.desc())
            )
        )

    def names(self) -> list[str]:
        return list(self.session.scalars(sa.select(Role.name).order_by(Role.name)))

    def _write_version(self, name: str, version: int, document: dict[str, Any]) -> None:
        self.session.add(
            RoleVersion(
                role_name=name, version=version, document=document, author_id=self.author_id
            )
        )
        self.session.flush()
        bump_revision(self.session)


# --- users -------------------------------------------------------------------------------


CREATE_FIELDS = frozenset(
    {"email", "password", "name", "roles", "partner", "manager", "language", "is_admin"}
)
UPDATE_FIELDS = (CREATE_FIELDS - {"email"}) | {"is_active"}


def _user_fields(data: Any, allowed: frozenset[str], refusal: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationFailed("a user must be a JSON object", [])
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValidationFailed("unknown keys", [{"field": k, "message": refusal} for k in unknown])
    return data


class UserService:
    def __init__(self, session: Session, registry: MetaRegistry, actor_id: int | None) -> None:
        self.session = session
        self.registry = registry
        self.actor_id = actor_id

    def get(self, user_id: int) -> User:
        user = self.session.get(User, user_id) if 1 <= user_id <= INT64_MAX else None
        if user is None:
            raise NotFound(f"no user with id {user_id}")
        return user

    def create(self, data: Any) -> User:
        data = _user_fields(data, CREATE_FIELDS, "is not a user field")
        email = data.get("email")
        if not isinstance(email, str) or "@" not in email or len(email) > 254:
            raise ValidationFailed(
                "a valid e-mail is required", [{"field": "email", "message": ""}]
            )
        email = email.strip().lower()
        if self.session.scalar(sa.select(User.id).where(User.email == email)) is not None:
            raise Conflict(
                f"a user with e-mail {email} exists", [{"field": "email", "message": ""}]
            )
        user = User(
            email=email,
            name=str(data.get("name") or email.split("@")[0])[:120],
            password_hash=generate_password_hash(check_password(data.get("password"))),
            password_changed_at=utcnow(),
            is_admin=bool(data.get("is_admin", False)),
            language=self._language(data.get("language", "en")),
        )
        self.session.add(user)
        self.session.flush()
        self._apply(user, data)
        return user

    def update(self, user_id: int, data: Any) -> User:
        data = _user_fields(data, UPDATE_FIELDS, "cannot be changed")
        user = self.get(user_id)
        if "password" in data:
            user.password_hash = generate_password_hash(check_password(data["password"]))
            user.password_changed_at = utcnow()
            user.failed_logins, user.locked_until = 0, None
        if "name" in data:
            user.name = str(data["name"])[:120]
        if "language" in data:
            user.language = self._language(data["language"])
        for flag in ("is_admin", "is_active"):
            if flag in data:
                if not isinstance(data[flag], bool):
                    raise ValidationFailed(
                        f"{flag} must be true or false", [{"field": flag, "message": ""}]
                    )
                if flag == "is_admin" and user.id == self.actor_id and not data[flag]:
                    raise Conflict("you cannot take away your own administrator rights")
                setattr(user, flag, data[flag])
                if flag == "is_active" and not data[flag]:
                    # Deactivation revokes every token: reactivating must not revive them.
                    self.session.execute(
                        sa.update(ApiToken)
                        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
                        .values(revoked_at=utcnow())
                    )
        self._apply(user, data)
        return user

    def _language(self, value: Any) -> str:
        if value not in ("en", "zh-CN"):
            raise ValidationFailed(
                "language must be en or zh-CN", [{"field": "language", "message": str(value)}]
            )
        return str(value)

    def _apply(self, user: User, data: dict[str, Any]) -> None:
        if "roles" in data:
            self.set_roles(user, data["roles"])
        if "partner" in data:
            user.partner_id = self._partner(data["partner"])
        if "manager" in data:
            manager = data["manager"]
            if manager is not None:
                if (
                    isinstance(manager, bool)
                    or not isinstance(manager, int)
                    or self.session.get(User, manager) is None
                ):
                    raise ValidationFailed(
                        "unknown manager", [{"field": "manager", "message": str(manager)}]
                    )
                if manager == user.id:
                    raise ValidationFailed(
                        "a user cannot manage themselves", [{"field": "manager", "message": ""}]
                    )
            user.manager_id = manager
        self.session.flush()

    def _partner(self, partner: Any) -> int | None:
        if partner is None:
            return None
        if isinstance(partner, bool) or not isinstance(partner, int):
            raise ValidationFailed(
                "partner must be a record id", [{"field": "partner", "message": str(partner)}]
            )
        self.registry.ensure_current(self.session)
        hierarchy = self.registry.hierarchy_object()
        if hierarchy is None:
            raise ValidationFailed(
                "no hierarchy object is defined (an object with a self-lookup parent)",
                [{"field": "partner", "message": ""}],
            )
        table = hierarchy.table
        found = self.session.execute(
            sa.select(table.c.id).where(table.c.id == partner, table.c.deleted_at.is_(None))
        ).first()
        if found is None:
            raise ValidationFailed(
                f"no {hierarchy.name} with id {partner}", [{"field": "partner", "message": ""}]
            )
        return partner

    def set_roles(self, user: User, roles: Any) -> None:
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ValidationFailed(
                "roles must be a list of role names", [{"field": "roles", "message": ""}]
            )
        known = set(self.session.scalars(sa.select(Role.name).where(Role.name.in_(roles))))
        missing = [r for r in roles if r not in known]
        if missing:
            raise ValidationFailed(
                "unknown roles", [{"field": "roles", "message": f"no role {r!r}"} for r in missing]
            )
        self.session.execute(sa.delete(UserRole).where(UserRole.user_id == user.id))
        for name in dict.fromkeys(roles):
            self.session.add(UserRole(user_id=user.id, role_name=name))
        self.session.flush()

    def roles_of(self, user_id: int) -> list[str]:
        return list(
            self.session.scalars(
                sa.select(UserRole.role_name)
                .where(UserRole.user_id == user_id)
                .order_by(UserRole.role_name)
            )
        )

    def as_dict(self, user: User) -> dict[str, Any]:
        return {
            "id": user.id,
            "email": user.email,
            "name": user.name,
            "is_active": user.is_active,
            "is_admin": user.is_admin,
            "language": user.language,
            "partner": user.partner_id,
            "manager": user.manager_id,
            "roles": self.roles_of(user.id),
            "created_at": _iso(user.created_at),
            "locked_until": _iso(user.locked_until),
        }


def _iso(moment: dt.datetime | None) -> str | None:
    return as_utc(moment).isoformat() if moment else None


# --- sign-in -------------------------------------------------------------------------------


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
        check_password_hash(_dummy_hash(), password or "")
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


# --- tokens --------------------------------------------------------------------------------


def create_token(
    session: Session, user_id: int, name: str, expires_in_days: Any = None
) -> tuple[ApiToken, str]:
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


def list_tokens(session: Session, user_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        sa.select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)
    )
    return [token_dict(row) for row in rows]


def token_dict(row: ApiToken) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "created_at": _iso(row.created_at),
        "expires_at": _iso(row.expires_at),
        "revoked_at": _iso(row.revoked_at),
        "last_used_at": _iso(row.last_used_at),
    }


def revoke_token(session: Session, user_id: int, token_id: int) -> ApiToken:
    row = session.get(ApiToken, token_id) if 1 <= token_id <= INT64_MAX else None
    if row is None or row.user_id != user_id:
        raise NotFound(f"no token with id {token_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


__all__ = ["Caller", "RoleService", "UserService", "audit", "sign_in"]

"""Users: the one way to create, change and describe them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from trellis.exceptions import (
    Conflict,
    NotFound,
    ValidationFailed,
)
from trellis.platform.messages import N_
from trellis.platform.metadata.fieldtypes import INT64_MAX
from trellis.platform.metadata.permissions import Operation
from trellis.platform.runtime.identity.passwords import check_password, hash_password
from trellis.platform.runtime.models import (
    ApiToken,
    Role,
    User,
    UserRole,
    iso,
    utcnow,
)
from trellis.platform.runtime.versioning import ROLES, current_documents

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.registry import MetaRegistry

CREATE_FIELDS = frozenset(
    {"email", "password", "name", "roles", "partner", "manager", "language", "is_admin"}
)
UPDATE_FIELDS = (CREATE_FIELDS - {"email"}) | {"is_active"}


def _shown(value: Any) -> str:
    """A value as a refusal quotes it: its repr, never more than 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _user_fields(data: Any, allowed: frozenset[str], refusal: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationFailed(N_("a user must be a JSON object"), [])
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValidationFailed(
            N_("unknown keys"), [{"field": k, "message": refusal} for k in unknown]
        )
    return data


class UserService:
    """Creates, changes and describes users; ``actor_id`` is who is acting."""

    def __init__(self, session: Session, registry: MetaRegistry, actor_id: int | None) -> None:
        self.session = session
        self.registry = registry
        self.actor_id = actor_id

    def get(self, user_id: int) -> User:
        """The user with ``user_id``; ``NotFound`` for an unknown or out-of-range id."""
        user = self.session.get(User, user_id) if 1 <= user_id <= INT64_MAX else None
        if user is None:
            raise NotFound(N_("no user with id %(id)s", id=user_id))
        return user

    def create(self, data: Any) -> User:
        """A new user from API data (e-mail lower-cased, a checked password, roles).

        Raises ``ValidationFailed`` for bad fields and ``Conflict`` when the e-mail is taken.
        """
        data = _user_fields(data, CREATE_FIELDS, N_("is not a user field"))
        email = data.get("email")
        if not isinstance(email, str) or "@" not in email or len(email) > 254:
            raise ValidationFailed(
                N_("invalid e-mail address"),
                [{"field": "email", "message": N_("must be an address such as name@example.com")}],
            )
        email = email.strip().lower()
        if self.session.scalar(sa.select(User.id).where(User.email == email)) is not None:
            raise Conflict(
                N_("a user with e-mail %(email)s exists", email=email),
                [
                    {
                        "field": "email",
                        "message": N_("%(email)s belongs to another user", email=email),
                    }
                ],
            )
        user = User(
            email=email,
            name=str(data.get("name") or email.split("@")[0])[:120],
            password_hash=hash_password(check_password(data.get("password"))),
            password_changed_at=utcnow(),
            is_admin=bool(data.get("is_admin", False)),
            language=self._language(data.get("language", "en")),
        )
        self.session.add(user)
        self.session.flush()
        self._apply(user, data)
        return user

    def ensure_admin(self, email: str, password: str) -> tuple[User, bool]:
        """Create the administrator ``email``, or reset an existing user's password and make
        them one (``trellis init``). Returns (user, created)."""
        existing = self.session.scalar(
            sa.select(User).where(User.email == str(email).strip().lower())
        )
        if existing is None:
            return self.create({"email": email, "password": password, "is_admin": True}), True
        self.update(existing.id, {"password": password, "is_admin": True})
        return existing, False

    def update(self, user_id: int, data: Any) -> User:
        """Change what ``data`` names (never the e-mail); a new password clears the lockout.

        The actor cannot drop their own admin rights or deactivate themselves (``Conflict``);
        deactivating revokes every token of the user.
        """
        data = _user_fields(data, UPDATE_FIELDS, N_("cannot be changed"))
        user = self.get(user_id)
        if "password" in data:
            user.password_hash = hash_password(check_password(data["password"]))
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
                        N_("%(flag)s must be true or false", flag=flag),
                        [
                            {
                                "field": flag,
                                "message": N_(
                                    "must be true or false, not %(value)s", value=_shown(data[flag])
                                ),
                            }
                        ],
                    )
                if flag == "is_admin" and user.id == self.actor_id and not data[flag]:
                    raise Conflict(N_("you cannot take away your own administrator rights"))
                if flag == "is_active" and user.id == self.actor_id and not data[flag]:
                    # Nobody would be left signed in to undo it, and their sessions end now.
                    raise Conflict(
                        N_("you cannot deactivate yourself"),
                        [{"field": "is_active", "message": N_("is your own account")}],
                    )
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
                N_("language must be en or zh-CN"),
                [
                    {
                        "field": "language",
                        "message": N_("must be en or zh-CN, not %(value)s", value=_shown(value)),
                    }
                ],
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
                        N_("unknown manager"),
                        [
                            {
                                "field": "manager",
                                "message": N_("no user with id %(id)s", id=_shown(manager)),
                            }
                        ],
                    )
                if manager == user.id:
                    raise ValidationFailed(
                        N_("a user cannot manage themselves"),
                        [{"field": "manager", "message": N_("cannot be the user themselves")}],
                    )
            user.manager_id = manager
        self.session.flush()
        if "roles" in data or "partner" in data:
            self._check_partner_fits_roles(user)

    def _check_partner_fits_roles(self, user: User) -> None:
        """A role with a partner scope needs a partner; a partner needs such a role.

        Either mistake is silent otherwise: a dealer's admin without a partner sees none of
        the dealer's records, and a partner given to a head-office role changes nothing.
        A user with no role yet may keep a partner (roles are often given later).
        """
        roles = self.roles_of(user.id)
        scoped = self.partner_scoped(roles)
        if scoped and user.partner_id is None:
            raise ValidationFailed(
                N_("role %(role)s needs a partner", role=repr(scoped[0])),
                [
                    {
                        "field": "partner",
                        "message": N_(
                            "role %(role)s shows its users their partner's records: "
                            "give the user's partner",
                            role=repr(name),
                        ),
                    }
                    for name in scoped
                ],
            )
        if roles and not scoped and user.partner_id is not None:
            raise ValidationFailed(
                N_("a partner needs a role with a partner scope"),
                [
                    {
                        "field": "partner",
                        "message": N_(
                            "none of the roles %(roles)s grants a partner "
                            "(hierarchy) scope: leave the partner out",
                            roles=", ".join(roles),
                        ),
                    }
                ],
            )

    def partner_scoped(self, roles: list[str]) -> list[str]:
        """Those of ``roles`` whose current document grants some operation the ``hierarchy``
        scope: their users see records through the partner they work for."""
        if not roles:
            return []
        rows = current_documents(self.session, ROLES, roles)
        return sorted(name for name, _, document in rows if _uses_hierarchy(document))

    def _partner(self, partner: Any) -> int | None:
        if partner is None:
            return None
        if isinstance(partner, bool) or not isinstance(partner, int):
            raise ValidationFailed(
                N_("partner must be a record id"),
                [
                    {
                        "field": "partner",
                        "message": N_("must be a record id, not %(value)s", value=_shown(partner)),
                    }
                ],
            )
        self.registry.ensure_current(self.session)
        hierarchy = self.registry.hierarchy_object()
        if hierarchy is None:
            raise ValidationFailed(
                N_("no hierarchy object is defined (an object with a self-lookup parent)"),
                [{"field": "partner", "message": N_("no object can hold partners yet")}],
            )
        table = hierarchy.table
        found = self.session.execute(
            sa.select(table.c.id).where(table.c.id == partner, table.c.deleted_at.is_(None))
        ).first()
        if found is None:
            raise ValidationFailed(
                N_("no %(object)s with id %(id)s", object=hierarchy.name, id=partner),
                [
                    {
                        "field": "partner",
                        "message": N_(
                            "no live %(object)s has id %(id)s", object=hierarchy.name, id=partner
                        ),
                    }
                ],
            )
        return partner

    def set_roles(self, user: User, roles: Any) -> None:
        """Replace the user's roles with ``roles`` (duplicates kept once).

        Raises ``ValidationFailed`` for anything but a list of names, or an unknown role.
        """
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ValidationFailed(
                N_("roles must be a list of role names"),
                [{"field": "roles", "message": N_("must be a list of role names")}],
            )
        known = set(self.session.scalars(sa.select(Role.name).where(Role.name.in_(roles))))
        missing = [r for r in roles if r not in known]
        if missing:
            raise ValidationFailed(
                N_("unknown roles"),
                [
                    {"field": "roles", "message": N_("no role %(role)s", role=repr(r))}
                    for r in missing
                ],
            )
        self.session.execute(sa.delete(UserRole).where(UserRole.user_id == user.id))
        for name in dict.fromkeys(roles):
            self.session.add(UserRole(user_id=user.id, role_name=name))
        self.session.flush()

    def search(
        self, text: str = "", role: str | None = None, after: int = 0, limit: int | None = None
    ) -> list[User]:
        """Users by id whose name or e-mail contains ``text`` (all when empty), holding
        ``role`` if given, from the id after ``after`` on."""
        query = sa.select(User).where(User.id > after).order_by(User.id)
        if role is not None:
            holders = sa.select(UserRole.user_id).where(UserRole.role_name == role)
            query = query.where(User.id.in_(holders))
        text = text.strip()
        if text:
            query = query.where(
                sa.or_(
                    User.name.icontains(text, autoescape=True),
                    User.email.icontains(text, autoescape=True),
                )
            )
        if limit is not None:
            query = query.limit(limit)
        return list(self.session.scalars(query))

    def role_counts(self) -> dict[str, int]:
        """How many users hold each role (roles nobody holds are left out)."""
        rows = self.session.execute(
            sa.select(UserRole.role_name, sa.func.count()).group_by(UserRole.role_name)
        )
        return {name: count for name, count in rows}

    def roles_of(self, user_id: int) -> list[str]:
        """The names of the user's roles, sorted."""
        return list(
            self.session.scalars(
                sa.select(UserRole.role_name)
                .where(UserRole.user_id == user_id)
                .order_by(UserRole.role_name)
            )
        )

    def as_dict(self, user: User) -> dict[str, Any]:
        """The user as the API shows them (with roles); never the password hash."""
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
            "created_at": iso(user.created_at),
            "locked_until": iso(user.locked_until),
        }


def _uses_hierarchy(document: Any) -> bool:
    objects = document.get("objects") if isinstance(document, dict) else None
    grants = objects.values() if isinstance(objects, dict) else []
    return any(
        isinstance(grant, dict) and grant.get(op) == "hierarchy"
        for grant in grants
        for op in Operation
    )

"""Who is making a request, and what they may do.

Both ways to sign in — an API token and a browser session — answer with one query
that reads the user, their role names and the metadata revision; both give an
``Identity``. The API adds the user's rights to it, making the request's ``Caller``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa

from trellis.platform.metadata.permissions import Permissions
from trellis.platform.runtime.models import MetaRevision, User, UserRole

# Core tables: the sign-in queries run on every request, and a Core statement skips the
# ORM's compile and result steps (nothing here needs an ORM object).
USERS = cast("sa.Table", User.__table__)
_USER_ROLES = cast("sa.Table", UserRole.__table__)
_META_REVISION = cast("sa.Table", MetaRevision.__table__)


@dataclass(frozen=True, kw_only=True)
class Identity:
    """Who signed in, as their sign-in's one query read them."""

    user_id: int
    email: str
    is_admin: bool
    partner_id: int | None
    roles: tuple[str, ...]
    revision: int  # the metadata revision, read by the same query
    token_id: int | None = None  # the API token; None for a browser session
    needs_touch: bool = False  # the token's last_used_at is due to be written again


@dataclass(frozen=True, kw_only=True)
class Caller(Identity):
    """An identity with what it may do."""

    permissions: Permissions  # what the caller may do (everything, for an admin)
    role_permissions: Permissions  # what their roles alone grant (to audit admin bypass)

    @classmethod
    def of(
        cls, identity: Identity, permissions: Permissions, role_permissions: Permissions
    ) -> Caller:
        """The caller behind ``identity``: ``permissions`` in force, ``role_permissions`` what
        their roles alone grant (they differ for an admin, whose bypass is audited).
        """
        known = {f.name: getattr(identity, f.name) for f in dataclasses.fields(Identity)}
        return cls(**known, permissions=permissions, role_permissions=role_permissions)


def role_names_column() -> sa.ScalarSelect[Any]:
    """The user's role names, comma-separated, as a column of a query on ``User``."""
    return (
        sa.select(sa.func.aggregate_strings(_USER_ROLES.c.role_name, ","))
        .where(_USER_ROLES.c.user_id == USERS.c.id)
        .scalar_subquery()
    )


def revision_column() -> sa.ScalarSelect[Any]:
    """The metadata revision, as a column of any query."""
    revision = _META_REVISION.c
    return sa.select(revision.revision).where(revision.id == 1).scalar_subquery()


def role_tuple(role_names: str | None) -> tuple[str, ...]:
    """The sorted role names from ``role_names_column``."""
    return tuple(sorted(role_names.split(","))) if role_names else ()

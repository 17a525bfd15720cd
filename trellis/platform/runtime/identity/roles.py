"""Roles: versioned documents like object definitions (the pure rules are in
``platform/metadata/permissions.py``); a change bumps the metadata revision so every
process recombines the rights it cached.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from trellis.exceptions import (
    Conflict,
    InvalidDefinition,
    NotFound,
    ValidationFailed,
)
from trellis.platform.metadata.permissions import validate_role
from trellis.platform.runtime import audit
from trellis.platform.runtime.models import (
    Role,
    RoleVersion,
    utcnow,
)
from trellis.platform.runtime.objects import bump_revision

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.registry import MetaRegistry


class RoleService:
    def __init__(
        self,
        session: Session,
        registry: MetaRegistry,
        author_id: int | None,
        audit_context: dict[str, Any] | None = None,
    ) -> None:
        self.session = session
        self.registry = registry
        self.author_id = author_id
        self.audit_context = audit_context or {}  # e-mail, address, user agent, if known

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
        audit.record(
            self.session,
            "role.created" if version == 1 else "role.updated",
            actor_id=self.author_id,
            target=f"role/{name}",
            detail={"version": version},
            **self.audit_context,
        )

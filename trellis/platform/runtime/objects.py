"""Defining objects: versions of definitions and the storage changes they imply.

Every change is one transaction: the new immutable version row, the DDL that
brings the table in line, and the revision bump that tells every process to reload
their caches. A refused change (invalid definition, data that cannot survive)
raises before anything is written, and the caller's rollback undoes the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from trellis.exceptions import BadRequest, NotFound
from trellis.platform.metadata.definition import load_definition, parse_definition
from trellis.platform.metadata.diff import diff_definitions
from trellis.platform.runtime import audit
from trellis.platform.runtime.models import MetaObject, MetaObjectVersion, MetaRevision, utcnow
from trellis.platform.runtime.storage import create_object_table, evolve_object_table

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.registry import MetaRegistry


@dataclass(frozen=True)
class DefinitionResult:
    name: str
    version: int
    document: dict[str, Any]
    created: bool  # a new version was written (False: the definition was unchanged)


class ObjectService:
    """Create, change and restore object definitions."""

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
        # Who else to name in the audit trail (e-mail, address, user agent), if known.
        self.audit_context = audit_context or {}

    def create(self, document: Any) -> DefinitionResult:
        name = document.get("x-name") if isinstance(document, dict) else None
        if isinstance(name, str) and self._current_row(name) is not None:
            from trellis.exceptions import Conflict

            raise Conflict(f"object {name!r} already exists; PUT /objects/{name} changes it")
        definition = parse_definition(document, self._known(exclude=name))
        create_object_table(self.session.connection(), definition)
        self.session.add(MetaObject(name=definition.name, current_version=1))
        self._write_version(definition.document, 1, diff_definitions(None, definition.document))
        return DefinitionResult(definition.name, 1, definition.document, True)

    def update(
        self, name: str, document: Any, restored_from: int | None = None
    ) -> DefinitionResult:
        row = self._require(name)
        if isinstance(document, dict) and document.get("x-name", name) != name:
            raise BadRequest(
                "x-name cannot change", [{"field": "/x-name", "message": f"must be {name!r}"}]
            )
        new = parse_definition(document, self._known(exclude=name))
        old_document = self.version_document(name, row.current_version)
        diff = diff_definitions(old_document, new.document)
        if diff.is_empty() and restored_from is None:
            return DefinitionResult(name, row.current_version, old_document, False)
        version = row.current_version + 1
        evolve_object_table(
            self.session.connection(), load_definition(old_document), new, diff, version
        )
        row.current_version = version
        row.updated_at = utcnow()
        self._write_version(new.document, version, diff, restored_from)
        old_parent = load_definition(old_document).hierarchy_field
        if new.hierarchy_field != old_parent:
            self._rebuild_hierarchy(name, new.hierarchy_field)
        return DefinitionResult(name, version, new.document, True)

    def _rebuild_hierarchy(self, name: str, parent_field: str | None) -> None:
        """The object became a hierarchy (or changed its parent field): recompute its closure."""
        from trellis.platform.runtime import hierarchy

        if parent_field is None:
            self.session.execute(
                sa.delete(hierarchy.links).where(hierarchy.links.c.object_name == name)
            )
            return
        self.registry.ensure_current(self.session)
        hierarchy.rebuild(self.session, self.registry.get(name), parent_field)

    def restore(self, name: str, version: int) -> DefinitionResult:
        """Make an old version current again, as a new version (history is never rewritten)."""
        self._require(name)
        return self.update(name, self.version_document(name, version), restored_from=version)

    def versions(self, name: str) -> list[MetaObjectVersion]:
        self._require(name)
        return list(
            self.session.scalars(
                sa.select(MetaObjectVersion)
                .where(MetaObjectVersion.object_name == name)
                .order_by(MetaObjectVersion.version.desc())
            )
        )

    def version_document(self, name: str, version: int) -> dict[str, Any]:
        document = self.session.execute(
            sa.select(MetaObjectVersion.document).where(
                MetaObjectVersion.object_name == name, MetaObjectVersion.version == version
            )
        ).scalar()
        if document is None:
            raise NotFound(f"object {name!r} has no version {version}")
        return dict(document)

    def _current_row(self, name: str) -> MetaObject | None:
        return self.session.get(MetaObject, name, with_for_update=True)

    def _require(self, name: str) -> MetaObject:
        row = self._current_row(name)
        if row is None:
            raise NotFound(f"no object named {name!r}")
        return row

    def _known(self, exclude: str | None) -> dict[str, dict[str, Any]]:
        self.registry.ensure_current(self.session)
        return {n: d for n, d in self.registry.documents().items() if n != exclude}

    def _write_version(
        self,
        document: dict[str, Any],
        version: int,
        diff: Any,
        restored_from: int | None = None,
    ) -> None:
        summary = diff.summary()
        if restored_from is not None:
            summary = f"restored version {restored_from}: {summary}"
        self.session.add(
            MetaObjectVersion(
                object_name=document["x-name"],
                version=version,
                document=document,
                diff=diff.as_dict(),
                summary=summary,
                restored_from=restored_from,
                author_id=self.author_id,
            )
        )
        bump_revision(self.session)
        self.session.flush()
        action = "restored" if restored_from else "created" if version == 1 else "updated"
        detail: dict[str, Any] = {"version": version}
        if restored_from is not None:
            detail["from"] = restored_from
        audit.record(
            self.session,
            f"object.{action}",
            actor_id=self.author_id,
            target=f"object/{document['x-name']}",
            detail=detail,
            **self.audit_context,
        )


def bump_revision(session: Session) -> None:
    """Tell every process that metadata changed (the row lock also serialises changers)."""
    updated = session.execute(
        sa.update(MetaRevision)
        .where(MetaRevision.id == 1)
        .values(revision=MetaRevision.revision + 1)
    )
    if updated.rowcount == 0:  # type: ignore[attr-defined]
        session.add(MetaRevision(id=1, revision=1))
    # Until this commits, caches built inside the transaction must not outlive a rollback.
    session.info["metadata_changed"] = True

"""Defining objects: versions of definitions and the storage changes they imply.

Definitions are versioned documents (``runtime/versioning.py``); what is particular to
objects is here: a definition is checked against the meta-schema and the other objects,
and each new version brings the object's table in line (and its hierarchy, when the
parent field changed). The version row, the DDL and the revision bump are one
transaction; a refused change (invalid definition, data that cannot survive) raises,
and the caller's rollback undoes the rest.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from trellis.platform.messages import N_
from trellis.platform.metadata.definition import load_definition, parse_definition
from trellis.platform.metadata.diff import DefinitionDiff
from trellis.platform.metadata.names import table_name
from trellis.platform.runtime import computed
from trellis.platform.runtime.models import AutonumberCounter, RecordHistory, User
from trellis.platform.runtime.storage import (
    create_object_table,
    drop_object_table,
    evolve_object_table,
    references_to,
)
from trellis.platform.runtime.versioning import OBJECTS, Change, DocumentStore


class ObjectService(DocumentStore[DefinitionDiff]):
    """Create, change and restore object definitions."""

    kind = OBJECTS

    def validate(self, document: Any, name: str | None) -> dict[str, Any]:
        """The definition normalised, checked against the meta-schema and the other
        current objects (``name`` itself excluded); ``InvalidDefinition`` lists every problem.
        """
        self.registry.ensure_current(self.session)
        known = {n: d for n, d in self.registry.documents().items() if n != name}
        return parse_definition(document, known).document

    def on_new_version(self, change: Change[DefinitionDiff]) -> None:
        """Bring the object's table (and its hierarchy) in line with the new version."""
        connection = self.session.connection()
        new = load_definition(change.document)
        if change.previous is None:
            create_object_table(connection, new)
            return
        old = load_definition(change.previous)
        evolve_object_table(connection, old, new, change.diff, change.version)
        if new.hierarchy_field != old.hierarchy_field:
            self._rebuild_hierarchy(change.name, new.hierarchy_field)
        if _computes(change.document) and _computes_differently(change.previous, change.document):
            self.registry.ensure_current(self.session)
            computed.backfill(self.session, self.registry, change.name)

    def check_deletable(self, name: str, document: dict[str, Any]) -> list[dict[str, str]]:
        """Objects that look it up, roles that grant rights on it, users of its partners."""
        self.registry.ensure_current(self.session)
        blockers = []
        seen: set[tuple[str, str]] = set()
        for other, doc in self.registry.documents().items():
            if other == name:
                continue
            for field_name, prop in doc["properties"].items():
                if prop.get("x-target") == name:
                    seen.add((table_name(other), field_name))
                    blockers.append(
                        {
                            "field": f"{other}.{field_name}",
                            "message": N_(
                                "the %(type)s field %(name)s of %(object)s points at it",
                                type=prop["x-type"],
                                name=repr(field_name),
                                object=repr(other),
                            ),
                        }
                    )
        connection = self.session.connection()
        for table, column in references_to(connection, table_name(name)):
            if (table, column) not in seen:
                blockers.append(
                    {
                        "field": f"{table}.{column}",
                        "message": N_(
                            "the archived column %(column)s of %(table)s still "
                            "points at it (the field was removed, its data kept)",
                            column=repr(column),
                            table=repr(table),
                        ),
                    }
                )
        for role, doc in sorted(self.registry.role_documents().items()):
            if name in doc.get("objects", {}):
                blockers.append(
                    {
                        "field": f"roles.{role}",
                        "message": N_("the role %(role)s grants rights on it", role=repr(role)),
                    }
                )
        if load_definition(document).hierarchy_field is not None:
            partnered = self.session.scalar(
                sa.select(sa.func.count()).select_from(User).where(User.partner_id.is_not(None))
            )
            if partnered:
                blockers.append(
                    {
                        "field": "users.partner_id",
                        "message": N_("%(count)s user(s) belong to its partners", count=partnered),
                    }
                )
        return blockers

    def on_delete(self, name: str, document: dict[str, Any]) -> None:
        """Drop the table and what the platform kept about its records."""
        from trellis.platform.runtime import hierarchy

        drop_object_table(self.session.connection(), name)
        self.session.execute(
            sa.delete(hierarchy.links).where(hierarchy.links.c.object_name == name)
        )
        self.session.execute(sa.delete(RecordHistory).where(RecordHistory.object_name == name))
        self.session.execute(
            sa.delete(AutonumberCounter).where(AutonumberCounter.object_name == name)
        )

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


def _computes(document: dict[str, Any]) -> bool:
    return any(
        isinstance(p, dict) and p.get("x-type") in ("formula", "rollup")
        for p in document.get("properties", {}).values()
    )


def _computes_differently(previous: dict[str, Any], document: dict[str, Any]) -> bool:
    """Whether a formula or roll-up is new or changed (its stored values are then stale)."""
    before = previous.get("properties", {})
    for name, prop in document.get("properties", {}).items():
        computes = isinstance(prop, dict) and prop.get("x-type") in ("formula", "rollup")
        if computes and before.get(name) != prop:
            return True
    return False

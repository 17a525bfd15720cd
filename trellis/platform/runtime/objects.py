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

from trellis.platform.metadata.definition import load_definition, parse_definition
from trellis.platform.metadata.diff import DefinitionDiff
from trellis.platform.runtime.storage import create_object_table, evolve_object_table
from trellis.platform.runtime.versioning import OBJECTS, Change, DocumentStore


class ObjectService(DocumentStore[DefinitionDiff]):
    """Create, change and restore object definitions."""

    kind = OBJECTS

    def validate(self, document: Any, name: str | None) -> dict[str, Any]:
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

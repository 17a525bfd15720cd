"""Permissions applied: record scopes as SQL conditions, field masks, operation checks.

Scopes become WHERE clauses, never per-row checks in Python:

- ``all``: no condition;
- ``own``: ``owner_id = :me``;
- ``hierarchy``: the record's partner is the caller's partner or below it —
  ``<scope column> IN (SELECT descendant_id FROM hierarchy_links WHERE ancestor_id = :partner)``,
  where the scope column is the hierarchy object's own ``id``, the object's
  ``x-scope-field``, or, for a master-detail child without one, its master's scope.

An ``Access`` built without a caller is the system itself (pack installs, the CLI).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from trellis.exceptions import Forbidden
from trellis.platform.messages import N_
from trellis.platform.metadata.permissions import Operation
from trellis.platform.runtime.hierarchy import descendants
from trellis.platform.runtime.query import among

# Trees up to this size are bound as a list of ids; larger ones stay a sub-select.
MAX_BOUND_MEMBERS = 5000

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.identity import Caller
    from trellis.platform.runtime.registry import MetaRegistry, ObjectMeta

_WORDS = {
    "read": N_("is read-only for you"),
    "hidden": N_("is hidden for you"),
    "write": N_("is writable for you"),
}
VERBS = {
    Operation.READ: N_("read"),
    Operation.CREATE: N_("create"),
    Operation.UPDATE: N_("change"),
    Operation.DELETE: N_("delete"),
    Operation.EXPORT: N_("export"),
}
# An operation's own name, as refusals name it ("no update permission").
OPERATIONS = {
    Operation.READ: N_("read"),
    Operation.CREATE: N_("create"),
    Operation.UPDATE: N_("update"),
    Operation.DELETE: N_("delete"),
    Operation.EXPORT: N_("export"),
}


class Access:
    """What one caller may do with records, answered from their permissions.

    ``caller`` ``None`` is the system, with every right; an admin has them too.
    """

    def __init__(
        self, registry: MetaRegistry, caller: Caller | None, session: Session | None = None
    ) -> None:
        self.registry = registry
        self.caller = caller
        self.session = session
        self._trees: dict[tuple[str, int], list[int]] = {}

    @property
    def unrestricted(self) -> bool:
        """True for the system (no caller) and for an admin: nothing is filtered or hidden."""
        return self.caller is None or self.caller.is_admin

    @property
    def user_id(self) -> int | None:
        """The caller's user id, ``None`` for the system."""
        return self.caller.user_id if self.caller else None

    def allowed(self, meta: ObjectMeta, operation: Operation) -> bool:
        """Whether any of the caller's roles grants ``operation`` on the object, in any scope."""
        if self.unrestricted:
            return True
        assert self.caller is not None
        return bool(self.caller.permissions.scopes(meta.name, operation))

    def require(self, meta: ObjectMeta, operation: Operation) -> None:
        """403 unless the caller holds ``operation`` on the object in some scope."""
        if not self.allowed(meta, operation):
            raise Forbidden(
                N_(
                    "you may not %(verb)s %(object)s records",
                    verb=VERBS[operation],
                    object=meta.name,
                ),
                [
                    {
                        "field": meta.name,
                        "message": N_(
                            "no %(operation)s permission", operation=OPERATIONS[operation]
                        ),
                    }
                ],
            )

    def condition(self, meta: ObjectMeta, operation: Operation) -> sa.ColumnElement[bool] | None:
        """The SQL condition a record must meet for ``operation``; None when unrestricted."""
        if self.unrestricted:
            return None
        assert self.caller is not None
        scopes = self.caller.permissions.scopes(meta.name, operation)
        if "all" in scopes:
            return None
        alternatives: list[sa.ColumnElement[bool]] = []
        if "own" in scopes:
            alternatives.append(meta.table.c.owner_id == self.caller.user_id)
        if "hierarchy" in scopes and self.caller.partner_id is not None:
            below = self._in_partner_tree(meta, self.caller.partner_id, depth=0)
            if below is not None:
                alternatives.append(below)
        return sa.or_(*alternatives) if alternatives else sa.false()

    def _in_partner_tree(
        self, meta: ObjectMeta, partner_id: int, depth: int
    ) -> sa.ColumnElement[bool] | None:
        definition = meta.definition
        if definition.hierarchy_field is not None:
            return self._in_tree(meta.table.c.id, meta.name, partner_id)
        scope_field = definition.scope_field
        if scope_field is not None:
            target = str(meta.fields[scope_field].target)
            return self._in_tree(meta.table.c[scope_field], target, partner_id)
        master = definition.master_field()
        if master is not None and depth < 5:
            parent = self.registry.get(str(master.target))
            inner = self._in_partner_tree(parent, partner_id, depth + 1)
            if inner is None:
                return None
            live = parent.table.c.deleted_at.is_(None)
            return meta.table.c[master.name].in_(sa.select(parent.table.c.id).where(live, inner))
        return None  # a record tied to no partner is outside every partner's tree

    def _in_tree(
        self, column: sa.ColumnElement[Any], hierarchy_object: str, partner_id: int
    ) -> sa.ColumnElement[bool]:
        """``column`` names the partner or a partner below it.

        The tree's members are read once per request and bound as a list when there are
        not too many: the planner then sees how many there are and picks the plan to
        match — the partner-column index for a small dealer, an index walk in sort order
        for a big region. (As a sub-select, PostgreSQL cannot tell a dealer from a region
        and plans both alike.) A very large tree stays a sub-select.
        """
        if self.session is None:
            return column.in_(descendants(hierarchy_object, partner_id))
        key = (hierarchy_object, partner_id)
        members = self._trees.get(key)
        if members is None:
            members = list(
                self.session.execute(
                    descendants(hierarchy_object, partner_id).limit(MAX_BOUND_MEMBERS + 1)
                ).scalars()
            )
            self._trees[key] = members
        if len(members) > MAX_BOUND_MEMBERS:
            return column.in_(descendants(hierarchy_object, partner_id))
        if not members:
            return sa.false()
        return among(column, members, self.session.get_bind().dialect.name)

    def forget_trees(self) -> None:
        """The hierarchy changed in this transaction: read the trees again."""
        self._trees.clear()

    def hidden(self, meta: ObjectMeta) -> frozenset[str]:
        """The object's fields the caller may not read (none when unrestricted)."""
        if self.unrestricted:
            return frozenset()
        assert self.caller is not None
        return self.caller.permissions.hidden_fields(meta.name, list(meta.fields))

    def field_access(self, meta: ObjectMeta, field_name: str) -> str:
        """``hidden``, ``read`` or ``write`` for one field; ``write`` when unrestricted."""
        if self.unrestricted:
            return "write"
        assert self.caller is not None
        return self.caller.permissions.field_access(meta.name, field_name)

    def writable(self, meta: ObjectMeta) -> set[str]:
        """The fields a write by the caller may set (the type allows it, and their right)."""
        return {
            name
            for name, spec in meta.fields.items()
            if spec.writable and self.field_access(meta, name) == "write"
        }

    def require_writable(self, meta: ObjectMeta, field_names: list[str]) -> None:
        """403 naming every field the caller may not write."""
        if self.unrestricted:
            return
        denied = [
            {"field": name, "message": _WORDS[self.field_access(meta, name)]}
            for name in field_names
            if name in meta.fields and self.field_access(meta, name) != "write"
        ]
        if denied:
            raise Forbidden(N_("you may not write these fields"), denied)

    def bypasses(self, meta: ObjectMeta, operation: Operation) -> bool:
        """True when an admin does what their roles alone would not allow (audited)."""
        if self.caller is None or not self.caller.is_admin:
            return False
        return not self.caller.role_permissions.scopes(meta.name, operation)

"""Partner hierarchies as a closure table (``hierarchy_links``).

For an object with a self-lookup (dealers and their ``parent``), every ancestor →
descendant pair is stored, the node itself included at depth 0. "This partner and
everything below it" is then one indexed lookup, whatever the depth, and a scoped
list query is a plain ``IN (SELECT descendant_id …)`` the database can plan well.

The table is maintained on every write of the hierarchy object: an insert links the
new node below its parent's ancestors; a move deletes the paths from the old
ancestors to the moved subtree and links the subtree below the new parent — a
handful of set-based statements, not a walk in Python.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from trellis.exceptions import ValidationFailed
from trellis.platform.messages import N_
from trellis.platform.runtime.models import HierarchyLink
from trellis.platform.runtime.query import among_param

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.registry import ObjectMeta

links = cast("sa.Table", HierarchyLink.__table__)
_COLUMNS = ["object_name", "ancestor_id", "descendant_id", "depth"]


def descendants(object_name: str, ancestor_id: Any) -> sa.Select[Any]:
    """``SELECT descendant_id`` of ``ancestor_id`` and every node below it."""
    return sa.select(links.c.descendant_id).where(
        links.c.object_name == object_name, links.c.ancestor_id == ancestor_id
    )


def writer_lock(session: Session, object_name: str) -> sa.ColumnElement[Any] | None:
    """The expression that serialises the writers of one hierarchy until the transaction ends.

    Each write reads the closure and then changes it; two at once on PostgreSQL (READ
    COMMITTED) could each miss the other's change: two crossing moves make a cycle, a
    node inserted below a moving one keeps its old ancestors. SQLite writers already
    queue (``BEGIN IMMEDIATE``): None there. Moves and inserts of partners are rare:
    waiting is cheap. An insert evaluates it in the statement that writes the new rows
    (one round trip less); every statement after that sees the closure as the previous
    writer left it.
    """
    if session.get_bind().dialect.name != "postgresql":
        return None
    return lock_expression(object_name)


def lock_expression(object_name: str) -> sa.ColumnElement[Any]:
    """PostgreSQL's transaction-scoped advisory lock of one hierarchy's writers."""
    key = sa.func.hashtext(f"trellis.hierarchy_links.{object_name}")
    return sa.func.pg_advisory_xact_lock(key)


def _one_writer(session: Session, object_name: str) -> None:
    lock = writer_lock(session, object_name)
    if lock is not None:
        session.execute(sa.select(lock))


def link_new(session: Session, meta: ObjectMeta, nodes: list[tuple[int, int | None]]) -> None:
    """Link new nodes (``(node, parent)``: rows written, parents linked) in one statement.

    A new node has no descendants yet, so its paths are its own (depth 0) and its parent's
    ancestors' plus one: one ``INSERT … SELECT … UNION ALL`` however many nodes there are,
    reading each node's parent from its row. The parents' ids are also bound, so the
    planner sees that only their few paths are read (with stale statistics it would hash
    the whole closure otherwise). The caller holds the ``writer_lock`` already.
    """
    if not nodes:
        return
    dialect = session.get_bind().dialect.name
    statement = meta.statement(("link_new", dialect), lambda: _link_new(meta, dialect))
    parents = sorted({parent for _, parent in nodes if parent is not None})
    session.execute(statement, {"nodes": [node for node, _ in nodes], "parents": parents})


def _link_new(meta: ObjectMeta, dialect: str) -> sa.Insert:
    """The statement of ``link_new``, built once per object version (``nodes``, ``parents``)."""
    table, parent_field = meta.table, str(meta.definition.hierarchy_field)
    new = (
        sa.select(table.c.id, table.c[parent_field].label("parent"))
        .where(among_param(table.c.id, "nodes", dialect))
        .cte("new_nodes")
    )
    name = sa.literal(meta.name, sa.String)
    own = sa.select(name, new.c.id, new.c.id, sa.literal(0, sa.Integer))
    below = (
        sa.select(name, links.c.ancestor_id, new.c.id, links.c.depth + 1)
        .join_from(new, links, links.c.descendant_id == new.c.parent)
        .where(
            links.c.object_name == meta.name,
            among_param(links.c.descendant_id, "parents", dialect),
        )
    )
    return sa.insert(links).from_select(_COLUMNS, sa.union_all(own, below))


def move(session: Session, object_name: str, node_id: int, new_parent_id: int | None) -> None:
    """Re-hang ``node_id`` (and its subtree) below ``new_parent_id``; refuse cycles."""
    _one_writer(session, object_name)
    subtree = descendants(object_name, node_id)
    if new_parent_id is not None:
        inside = session.execute(
            subtree.where(links.c.descendant_id == new_parent_id).limit(1)
        ).first()
        if inside is not None:
            raise ValidationFailed(
                N_("a record cannot be moved below itself or its own descendants"),
                [
                    {
                        "field": "parent",
                        "message": N_(
                            "%(parent)s is below %(id)s", parent=new_parent_id, id=node_id
                        ),
                    }
                ],
            )
    session.execute(
        sa.delete(links).where(
            links.c.object_name == object_name,
            links.c.descendant_id.in_(subtree.scalar_subquery()),
            links.c.ancestor_id.not_in(subtree.scalar_subquery()),
        )
    )
    if new_parent_id is not None:
        _link_subtree_below(session, object_name, node_id, new_parent_id)


def _link_subtree_below(session: Session, object_name: str, node_id: int, parent_id: int) -> None:
    up = links.alias("up")
    down = links.alias("down")
    # Every ancestor of the parent × every node of the moved subtree: a deliberate cross join.
    paths = (
        sa.select(
            sa.literal(object_name),
            up.c.ancestor_id,
            down.c.descendant_id,
            up.c.depth + down.c.depth + 1,
        )
        .select_from(up.join(down, sa.true()))
        .where(
            up.c.object_name == object_name,
            up.c.descendant_id == parent_id,
            down.c.object_name == object_name,
            down.c.ancestor_id == node_id,
        )
    )
    session.execute(sa.insert(links).from_select(_COLUMNS, paths))


def rebuild(session: Session, meta: ObjectMeta, parent_field: str) -> int:
    """Recompute the closure of a whole object from its parent pointers. Returns link count.

    Used when an object becomes a hierarchy (or its parent field changes) while it
    already holds records. Iterative, one level per statement, so it is set-based
    and bounded by the depth of the tree.
    """
    table = meta.table
    _one_writer(session, meta.name)
    session.execute(sa.delete(links).where(links.c.object_name == meta.name))
    session.execute(
        sa.insert(links).from_select(
            _COLUMNS,
            sa.select(sa.literal(meta.name), table.c.id, table.c.id, sa.literal(0)),
        )
    )
    depth = 0
    while True:
        previous = links.alias("previous")
        step = sa.select(
            sa.literal(meta.name),
            table.c[parent_field],
            previous.c.descendant_id,
            sa.literal(depth + 1),
        ).where(
            previous.c.object_name == meta.name,
            previous.c.depth == depth,
            previous.c.ancestor_id == table.c.id,
            table.c[parent_field].is_not(None),
        )
        inserted = session.execute(
            sa.insert(links)
            .from_select(_COLUMNS, step)
            .execution_options(preserve_rowcount=True)  # INSERT … SELECT reports -1 otherwise
        ).rowcount  # type: ignore[attr-defined]
        if inserted <= 0 or depth > 1000:
            break
        depth += 1
    return int(
        session.execute(
            sa.select(sa.func.count()).select_from(links).where(links.c.object_name == meta.name)
        ).scalar_one()
    )

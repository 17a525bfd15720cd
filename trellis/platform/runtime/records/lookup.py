"""Records by name: the titles behind ids, and search over title and searchable fields.

Both read only what the caller may read: a record outside their scope has no title
for them (pages show ``#id``) and never appears in a search.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.sql.util import find_tables

from trellis.platform.metadata.permissions import Operation

if TYPE_CHECKING:
    from trellis.platform.runtime.access import Access
    from trellis.platform.runtime.registry import ObjectMeta

MAX_TITLES = 500
SEARCH_TYPES = frozenset({"text", "textarea", "email", "phone", "url", "autonumber", "picklist"})


def title_column(meta: ObjectMeta, access: Access) -> sa.ColumnElement[Any] | None:
    """The column that names a record, if the caller may see it."""
    title = meta.definition.title_field
    if title is None or title in access.hidden(meta):
        return None
    return meta.table.c[title]


def search_columns(meta: ObjectMeta, access: Access) -> list[sa.ColumnElement[Any]]:
    """The title field and the fields marked ``x-searchable`` that the caller may see."""
    hidden = access.hidden(meta)
    names = [meta.definition.title_field] + [
        name for name, spec in meta.fields.items() if spec.schema.get("x-searchable")
    ]
    return [
        meta.table.c[n]
        for n in dict.fromkeys(names)
        if n is not None and n not in hidden and meta.fields[n].type.name in SEARCH_TYPES
    ]


def _readable(meta: ObjectMeta, access: Access, statement: sa.Select[Any]) -> sa.Select[Any]:
    statement = statement.where(meta.table.c.deleted_at.is_(None))
    visible = access.condition(meta, Operation.READ)
    return statement if visible is None else statement.where(visible)


def titles(access: Access, meta: ObjectMeta, ids: set[int], hops: int = 1) -> dict[int, str]:
    """``{id: title}`` for the live records among ``ids`` that the caller may read.

    A title field that is itself a lookup (an order line named by its product) names the
    record by the target's title, one hop deep, as far as the caller may read the target.
    """
    wanted = sorted(i for i in ids if isinstance(i, int))[:MAX_TITLES]
    if not wanted or not access.allowed(meta, Operation.READ):
        return {}
    column = title_column(meta, access)
    table = meta.table
    shown = column if column is not None else table.c.id
    statement = _readable(meta, access, sa.select(table.c.id, shown).where(table.c.id.in_(wanted)))
    assert access.session is not None
    rows = access.session.execute(statement).all()
    target = _title_target(meta, access) if column is not None and hops > 0 else None
    if target is not None:
        names = titles(access, target, {value for _id, value in rows}, hops - 1)
        return {row_id: names.get(value, f"#{row_id}") for row_id, value in rows}
    return {row_id: title_text(row_id, value) for row_id, value in rows}


def _title_target(meta: ObjectMeta, access: Access) -> ObjectMeta | None:
    """The object a lookup title field points at, if the title field is a lookup."""
    title = meta.definition.title_field
    target = meta.fields[title].target if title is not None else None
    return access.registry.get(target) if target is not None else None


def title_columns(
    access: Access, meta: ObjectMeta, names: Iterable[str]
) -> dict[str, sa.ColumnElement[Any]]:
    """Sub-selects reading, with each row of ``meta``, the title of the record a lookup
    field points at — so a page of records and its titles are one statement.

    For each lookup field in ``names`` the caller may see and whose target they may read:
    the title (the id, when the title field is hidden from them) of the pointed-at record
    when it is live and readable, else NULL — what ``titles`` reads, one field at a time.
    A field whose target's scope would mention ``meta``'s own table (a self-lookup, say)
    is left out, as the sub-select would correlate with the outer row, and so is one whose
    target is named by a lookup of its own (an order line by its product): ``titles``
    serves those.
    """
    found: dict[str, sa.ColumnElement[Any]] = {}
    hidden = access.hidden(meta)
    for name in dict.fromkeys(names):
        spec = meta.fields.get(name)
        if spec is None or spec.target is None or name in hidden:
            continue
        target = access.registry.find(str(spec.target))
        if target is None or target.table is meta.table or _title_target(target, access):
            continue  # a self-lookup, or a target named by its own lookup: ``titles`` serves it
        if not access.allowed(target, Operation.READ):
            continue
        visible = access.condition(target, Operation.READ)
        if visible is not None and meta.table in find_tables(visible, include_aliases=True):
            continue
        table = target.table
        column = title_column(target, access)
        statement = sa.select(column if column is not None else table.c.id).where(
            table.c.id == meta.table.c[name], table.c.deleted_at.is_(None)
        )
        if visible is not None:
            statement = statement.where(visible)
        found[name] = statement.correlate(meta.table).scalar_subquery()
    return found


def title_text(row_id: int, value: Any) -> str:
    """A record's title as ``titles`` gives it (``#id`` when it has none)."""
    return str(value) if value not in (None, "") else f"#{row_id}"


def search(access: Access, meta: ObjectMeta, text: str, limit: int = 10) -> list[tuple[int, str]]:
    """Up to ``limit`` readable records whose title or searchable fields contain ``text``."""
    if not access.allowed(meta, Operation.READ):
        return []
    table = meta.table
    columns = search_columns(meta, access)
    title = title_column(meta, access)
    shown = title if title is not None else table.c.id
    statement = sa.select(table.c.id, shown)
    text = text.strip()
    if text:
        matches = [c.icontains(text, autoescape=True) for c in columns]
        if text.isdigit():
            matches.append(table.c.id == int(text[:18]))
        if not matches:
            return []
        statement = statement.where(sa.or_(*matches))
    order = shown if title is not None else table.c.id
    statement = _readable(meta, access, statement).order_by(order, table.c.id).limit(limit)
    assert access.session is not None
    rows = access.session.execute(statement).all()
    target = _title_target(meta, access) if title is not None else None
    if target is not None:
        names = titles(access, target, {row[1] for row in rows}, 0)
        return [(row[0], names.get(row[1], f"#{row[0]}")) for row in rows]
    return [(row[0], str(row[1]) if row[1] not in (None, "") else f"#{row[0]}") for row in rows]

"""Physical storage: one real table per object, evolved through Alembic operations.

``build_table`` turns a definition into a SQLAlchemy ``Table`` (the runtime queries
through it); ``create_object_table`` and ``evolve_object_table`` change the database
with Alembic's operations API — batch mode, so the same code works on SQLite, where
most ALTERs mean copying the table, and on PostgreSQL, where adding a nullable
column is a catalog-only change that never rewrites the table.

Removing a field never drops data: the column is renamed ``_archived_v<N>_<field>``
(names that no field can have, since field names start with a letter) and renamed
back when a later version brings the field back.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import fastjsonschema
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext

from trellis.exceptions import IncompatibleChange
from trellis.platform.metadata.fieldtypes import FieldConversionError, FieldSpec
from trellis.platform.metadata.names import table_name
from trellis.platform.runtime.models import BigId

if TYPE_CHECKING:
    from trellis.platform.metadata.definition import ObjectDefinition
    from trellis.platform.metadata.diff import DefinitionDiff

ARCHIVE_RE = re.compile(r"^_archived_v(\d+)_([a-z][a-z0-9_]*)$")
CONVERT_BATCH = 1000
MAX_OFFENDERS_SHOWN = 10


def _ident(prefix: str, table: str, column: str) -> str:
    """An index name that fits PostgreSQL's 63-character limit."""
    name = f"{prefix}_{table}_{column}"
    if len(name) <= 60:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[:51]}_{digest}"


def system_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.BigInteger, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.BigInteger, nullable=True),
        sa.Column("owner_id", sa.BigInteger, nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    ]


def field_column(spec: FieldSpec) -> sa.Column[Any]:
    args: list[Any] = []
    if spec.target is not None:
        ondelete = "SET NULL" if spec.on_delete == "set_null" else None
        args.append(sa.ForeignKey(f"{table_name(spec.target)}.id", ondelete=ondelete))
    return sa.Column(spec.name, spec.column_type(), *args, nullable=True)


def field_indexes(table: sa.Table, spec: FieldSpec) -> list[sa.Index]:
    column = table.c[spec.name]
    if spec.unique:
        live = table.c.deleted_at.is_(None)
        return [
            sa.Index(
                _ident("ux", table.name, spec.name),
                column,
                unique=True,
                postgresql_where=live,
                sqlite_where=live,
            )
        ]
    if spec.indexed:
        return [sa.Index(_ident("ix", table.name, spec.name), column)]
    return []


def build_table(definition: ObjectDefinition, metadata: sa.MetaData) -> sa.Table:
    """The ``Table`` of an object as its definition describes it (archived columns left out)."""
    name = table_name(definition.name)
    table = sa.Table(
        name,
        metadata,
        *system_columns(),
        *(field_column(spec) for spec in definition.fields.values()),
    )
    for spec in definition.fields.values():
        field_indexes(table, spec)
    for columns in definition.composite_indexes:
        sa.Index(_ident("ix", name, "_".join(columns)), *(table.c[c] for c in columns))
    return table


def _operations(connection: sa.Connection) -> Operations:
    return Operations(MigrationContext.configure(connection))


def create_object_table(connection: sa.Connection, definition: ObjectDefinition) -> None:
    """Create the table of a new object, with its indexes."""
    ops = _operations(connection)
    scratch = sa.MetaData()
    _stub_targets(scratch, definition.fields.values(), definition.name)
    table = build_table(definition, scratch)
    ops.create_table(table.name, *[c._copy() for c in table.columns])
    for index in table.indexes:
        _create_index(ops, table, index)


def _stub_targets(metadata: sa.MetaData, specs: Iterable[FieldSpec], own: str) -> None:
    """Lookups need their target tables in the same MetaData to build foreign keys."""
    for spec in specs:
        target = spec.target
        if target is not None and target != own and table_name(target) not in metadata.tables:
            sa.Table(table_name(target), metadata, sa.Column("id", BigId, primary_key=True))


def _create_index(ops: Operations, table: sa.Table, index: sa.Index) -> None:
    ops.create_index(
        str(index.name),
        table.name,
        [c.name for c in index.columns],
        unique=bool(index.unique),
        postgresql_where=index.dialect_options["postgresql"]["where"],
        sqlite_where=index.dialect_options["sqlite"]["where"],
    )


def evolve_object_table(
    connection: sa.Connection,
    old: ObjectDefinition,
    new: ObjectDefinition,
    diff: DefinitionDiff,
    new_version: int,
) -> None:
    """Bring the table of ``old`` to ``new``, or raise ``IncompatibleChange`` having done nothing.

    Every check that could refuse the change runs before the first ALTER, so a
    refusal leaves the table as it was (and the caller's transaction rolls back
    anything else).
    """
    name = table_name(new.name)
    inspector = sa.inspect(connection)
    existing = {c["name"]: c for c in inspector.get_columns(name)}
    current = build_table(old, _scratch_with_targets(old, new))

    changed = [c for c in diff.changed if _storage_relevant(c.changes)]
    _check_changes(connection, current, old, new, [c.field for c in changed])

    ops = _operations(connection)
    live_indexes = {str(ix["name"]) for ix in inspector.get_indexes(name)}
    for field_name in diff.removed:
        _drop_field_indexes(ops, name, field_name, live_indexes)
        ops.alter_column(name, field_name, new_column_name=f"_archived_v{new_version}_{field_name}")
    for field_name in diff.added:
        _add_or_unarchive(connection, ops, name, new.fields[field_name], existing)
    for field_name in [c.field for c in changed]:
        _drop_field_indexes(ops, name, field_name, live_indexes)
        _change_column(
            connection, ops, current, old.fields[field_name], new.fields[field_name], new_version
        )
    _sync_indexes(connection, new)


def _scratch_with_targets(*definitions: ObjectDefinition) -> sa.MetaData:
    scratch = sa.MetaData()
    for definition in definitions:
        _stub_targets(scratch, definition.fields.values(), definition.name)
    return scratch


_STORAGE_KEYWORDS = {
    "x-type",
    "type",
    "maxLength",
    "minLength",
    "pattern",
    "minimum",
    "maximum",
    "enum",
    "items",
    "format",
    "x-scale",
    "x-unique",
    "x-indexed",
    "x-target",
    "x-on-delete",
    "uniqueItems",
    "minItems",
    "maxItems",
    "required",
}


def _storage_relevant(changes: dict[str, Any]) -> bool:
    return bool(set(changes) & _STORAGE_KEYWORDS)


def _check_changes(
    connection: sa.Connection,
    table: sa.Table,
    old: ObjectDefinition,
    new: ObjectDefinition,
    field_names: list[str],
) -> None:
    details = []
    for field_name in field_names:
        before, after = old.fields[field_name], new.fields[field_name]
        if before.target != after.target or (before.type.name == "master_detail") != (
            after.type.name == "master_detail"
        ):
            details.append(
                {
                    "field": field_name,
                    "message": "a reference cannot change its target or kind; "
                    "remove the field and add a new one",
                }
            )
            continue
        offenders = _offending_rows(connection, table, before, after)
        if offenders:
            shown = ", ".join(str(i) for i in offenders[:MAX_OFFENDERS_SHOWN])
            more = (
                f" and {len(offenders) - MAX_OFFENDERS_SHOWN} more"
                if len(offenders) > MAX_OFFENDERS_SHOWN
                else ""
            )
            details.append(
                {
                    "field": field_name,
                    "message": f"{len(offenders)} existing record(s) cannot become "
                    f"{after.type.name} as defined: ids {shown}{more}",
                }
            )
            continue
        if after.unique and not before.unique:
            duplicates = _duplicate_values(connection, table, field_name)
            if duplicates:
                details.append(
                    {
                        "field": field_name,
                        "message": "existing records share values, so the field cannot be unique: "
                        + ", ".join(repr(v) for v in duplicates[:MAX_OFFENDERS_SHOWN]),
                    }
                )
    if details:
        raise IncompatibleChange(
            "the stored data cannot survive this change; nothing was changed", details
        )


def _offending_rows(
    connection: sa.Connection, table: sa.Table, before: FieldSpec, after: FieldSpec
) -> list[int]:
    validate = fastjsonschema.compile(
        {"$schema": "http://json-schema.org/draft-07/schema#", **after.value_schema()}
    )
    column = table.c[before.name]
    offenders: list[int] = []
    rows = connection.execute(
        sa.select(table.c.id, column).where(column.is_not(None)).order_by(table.c.id)
    )
    for record_id, stored in rows:
        try:
            value = before.to_json(stored)
            if before.type.name != after.type.name:
                value = after.type.coerce(value, after)
            validate(value)
            after.to_python(value)
        except (FieldConversionError, fastjsonschema.JsonSchemaException, ValueError, TypeError):
            offenders.append(record_id)
    return offenders


def _duplicate_values(connection: sa.Connection, table: sa.Table, field_name: str) -> list[Any]:
    column = table.c[field_name]
    query = (
        sa.select(column)
        .where(column.is_not(None), table.c.deleted_at.is_(None))
        .group_by(column)
        .having(sa.func.count() > 1)
        .limit(MAX_OFFENDERS_SHOWN)
    )
    return list(connection.execute(query).scalars())


def _drop_field_indexes(ops: Operations, table: str, field_name: str, live: set[str]) -> None:
    for prefix in ("ux", "ix"):
        index_name = _ident(prefix, table, field_name)
        if index_name in live:
            ops.drop_index(index_name, table_name=table)
            live.discard(index_name)


def _add_or_unarchive(
    connection: sa.Connection,
    ops: Operations,
    table: str,
    spec: FieldSpec,
    existing: dict[str, Any],
) -> None:
    """Add the field's column, or bring back the newest archived column of that name.

    An archived column comes back only when its type is the one the field now
    wants (the case of restoring a version); a field re-added with another type
    gets a fresh column and the old data stays archived.
    """
    wanted_type = str(spec.column_type().compile(connection.dialect))
    archived = sorted(
        (int(match.group(1)), name)
        for name in existing
        if (match := ARCHIVE_RE.match(name)) and match.group(2) == spec.name
    )
    if archived:
        _, archived_name = archived[-1]
        stored_type = str(existing[archived_name]["type"].compile(connection.dialect))
        if stored_type == wanted_type:
            with ops.batch_alter_table(table) as batch:
                batch.alter_column(archived_name, new_column_name=spec.name)
            return
    scratch = sa.MetaData()
    _stub_targets(scratch, [spec], own=table.removeprefix("obj_"))
    column = field_column(spec)
    sa.Table(table, scratch, sa.Column("id", BigId, primary_key=True), column)
    with ops.batch_alter_table(table) as batch:
        batch.add_column(column._copy())


def _same_family(before: sa.types.TypeEngine[Any], after: sa.types.TypeEngine[Any]) -> bool:
    return isinstance(before, sa.String) and isinstance(after, sa.String)


def _change_column(
    connection: sa.Connection,
    ops: Operations,
    table: sa.Table,
    before: FieldSpec,
    after: FieldSpec,
    new_version: int,
) -> None:
    before_type, after_type = before.column_type(), after.column_type()
    compiled_before = str(before_type.compile(connection.dialect))
    compiled_after = str(after_type.compile(connection.dialect))
    if compiled_before == compiled_after:
        return
    if _same_family(before_type, after_type):
        with ops.batch_alter_table(table.name) as batch:
            batch.alter_column(before.name, type_=after_type, existing_type=before_type)
        return
    _convert_column(connection, ops, table, before, after, new_version)


def _convert_column(
    connection: sa.Connection,
    ops: Operations,
    table: sa.Table,
    before: FieldSpec,
    after: FieldSpec,
    new_version: int,
) -> None:
    """Change a column's type by copying converted values; the old column is archived."""
    temporary = f"_converting_{after.name}"
    with ops.batch_alter_table(table.name) as batch:
        batch.add_column(sa.Column(temporary, after.column_type(), nullable=True))
    target = sa.Table(
        table.name,
        sa.MetaData(),
        sa.Column("id", BigId, primary_key=True),
        sa.Column(temporary, after.column_type()),
    )
    column = table.c[before.name]
    rows = connection.execute(
        sa.select(table.c.id, column).where(column.is_not(None)).order_by(table.c.id)
    ).all()
    statement = (
        sa.update(target)
        .where(target.c.id == sa.bindparam("_id"))
        .values({temporary: sa.bindparam("_value")})
    )
    for start in range(0, len(rows), CONVERT_BATCH):
        batch_rows = rows[start : start + CONVERT_BATCH]
        params = [
            {
                "_id": record_id,
                "_value": after.to_python(after.type.coerce(before.to_json(stored), after)),
            }
            for record_id, stored in batch_rows
        ]
        connection.execute(statement, params)
    with ops.batch_alter_table(table.name) as batch:
        batch.alter_column(before.name, new_column_name=f"_archived_v{new_version}_{before.name}")
    with ops.batch_alter_table(table.name) as batch:
        batch.alter_column(temporary, new_column_name=after.name)


def _sync_indexes(connection: sa.Connection, definition: ObjectDefinition) -> None:
    """Create the indexes the definition asks for and drop the platform's stale ones.

    SQLite's batch mode rebuilds tables and may lose partial-index clauses, so the
    wanted set is re-created from the definition after every change.
    """
    table = build_table(definition, _scratch_with_targets(definition))
    inspector = sa.inspect(connection)
    live = {str(ix["name"]): ix for ix in inspector.get_indexes(table.name)}
    wanted = {str(ix.name): ix for ix in table.indexes}
    ops = _operations(connection)
    for index_name in live:
        if index_name.startswith(("ux_obj_", "ix_obj_")) and index_name not in wanted:
            ops.drop_index(index_name, table_name=table.name)
    for index_name, index in wanted.items():
        if index_name not in live:
            _create_index(ops, table, index)

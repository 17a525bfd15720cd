"""Physical storage: one real table per object, evolved through Alembic operations.

``build_table`` turns a definition into a SQLAlchemy ``Table`` (the runtime queries
through it); ``create_object_table`` and ``evolve_object_table`` change the database
with Alembic's operations API — batch mode, so the same code works on SQLite, where
most ALTERs mean copying the table, and on PostgreSQL, where adding a nullable
column is a catalog-only change that never rewrites the table.

Removing a field never drops data: the column is renamed ``_archived_v<N>_<field>``
(names that no field can have, since field names start with a letter) and renamed
back when a later version brings the field back.

Lookups and master-detail links are real foreign keys to ``obj_<target>(id)``, named
``fk_<table>_<column>``: ``RESTRICT`` for a plain lookup, ``SET NULL`` for
``x-on-delete: set_null``, ``CASCADE`` (and ``NOT NULL``) for master-detail. An archived
column keeps its foreign key, so the pointers it holds stay valid for the day it comes back.

SQLite changes a constraint only by rebuilding the table, and dropping the old copy of a
table inside a transaction fires the ON DELETE rules of every row pointing at it
(``PRAGMA foreign_keys`` cannot be switched off inside one). So a rebuild is refused
while rows point at the table, unless foreign keys are off for the connection (as
``trellis init`` does); everything else uses SQLite's own ``ALTER TABLE`` forms, which
never copy the table.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import fastjsonschema
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext

from trellis.exceptions import IncompatibleChange
from trellis.platform.messages import N_, Message
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
    """The columns every object table has before its fields: id, version, the
    created/updated stamps, owner and ``deleted_at`` (soft delete). New ones each call.
    """
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


ON_DELETE_SQL = {"restrict": "RESTRICT", "set_null": "SET NULL", "cascade": "CASCADE"}


def fk_name(table: str, column: str) -> str:
    """The deterministic name of the foreign key of ``table.column``."""
    return _ident("fk", table, column)


@dataclass(frozen=True)
class Reference:
    """A foreign key as the database holds it (or should): target table and ON DELETE rule."""

    target: str
    on_delete: str  # SQL spelling: RESTRICT, SET NULL, CASCADE, NO ACTION


# Field types whose column points at a platform table rather than at an object's.
PLATFORM_REFERENCES = {"user": "users", "file": "stored_files", "image": "stored_files"}


def reference_table(spec: FieldSpec) -> str | None:
    """The table a field's foreign key points at: a lookup's ``obj_<target>``, a user
    field's ``users``, a file field's ``stored_files``; ``None`` for other fields.
    """
    platform = PLATFORM_REFERENCES.get(spec.type.name)
    if platform is not None:
        return platform
    return table_name(spec.target) if spec.target is not None else None


def wanted_reference(spec: FieldSpec) -> Reference | None:
    """The foreign key a field asks for, if it is a lookup, master-detail, user or file."""
    target = reference_table(spec)
    if target is None:
        return None
    return Reference(target, ON_DELETE_SQL[spec.on_delete])


def is_master_detail(spec: FieldSpec) -> bool:
    """Whether the field links a child to its parent (deleted and restored with it)."""
    return spec.type.name == "master_detail"


def field_column(spec: FieldSpec, table: str) -> sa.Column[Any]:
    """The column of a field; master-detail links are NOT NULL (the write path always sets them)."""
    args: list[Any] = []
    reference = wanted_reference(spec)
    if reference is not None:
        args.append(
            sa.ForeignKey(
                f"{reference.target}.id",
                name=fk_name(table, spec.name),
                ondelete=reference.on_delete,
            )
        )
    return sa.Column(spec.name, spec.column_type(), *args, nullable=not is_master_detail(spec))


def field_indexes(table: sa.Table, spec: FieldSpec) -> list[sa.Index]:
    """The index a field's column gets: unique among live (not deleted) rows for a
    unique field, plain for an indexed one or a reference, none otherwise.
    """
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
        *(field_column(spec, name) for spec in definition.fields.values()),
    )
    for spec in definition.fields.values():
        field_indexes(table, spec)
    for columns in definition.composite_indexes:
        sa.Index(_ident("ix", name, "_".join(columns)), *(table.c[c] for c in columns))
    return table


def _operations(connection: sa.Connection) -> Operations:
    return Operations(MigrationContext.configure(connection))


def create_object_table(connection: sa.Connection, definition: ObjectDefinition) -> None:
    """Create the table of a new object, with its foreign keys and indexes."""
    scratch = sa.MetaData()
    _stub_targets(scratch, definition.fields.values(), definition.name)
    # Created from the Table itself: copying its columns would drop their foreign keys.
    build_table(definition, scratch).create(connection)


def _stub_targets(metadata: sa.MetaData, specs: Iterable[FieldSpec], own: str) -> None:
    """Lookups need their target tables in the same MetaData to build foreign keys."""
    for spec in specs:
        target = reference_table(spec)
        if target is not None and target != table_name(own) and target not in metadata.tables:
            sa.Table(target, metadata, sa.Column("id", BigId, primary_key=True))


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
    physical = PhysicalTable.read(connection, name)
    current = build_table(old, _scratch_with_targets(old, new))

    changed = [c.field for c in diff.changed if _storage_relevant(c.changes)]
    _check_changes(connection, current, old, new, changed)
    additions = {f: _archived_match(connection, physical, new.fields[f]) for f in diff.added}
    _check_structure(connection, physical, new, diff.removed, additions, changed)

    ops = _operations(connection)
    live_indexes = {str(ix["name"]) for ix in sa.inspect(connection).get_indexes(name)}
    for field_name in diff.removed:
        _drop_field_indexes(ops, name, field_name, live_indexes)
        archived = f"_archived_v{new_version}_{field_name}"
        _archive_column(connection, ops, physical.refresh(connection), field_name, archived)
    for field_name, archived_name in additions.items():
        spec = new.fields[field_name]
        if archived_name is None:
            _add_column(connection, ops, name, spec)
        else:
            _unarchive_column(connection, ops, physical.refresh(connection), archived_name, spec)
    for field_name in changed:
        _drop_field_indexes(ops, name, field_name, live_indexes)
        _change_column(
            connection, ops, current, old.fields[field_name], new.fields[field_name], new_version
        )
    _sync_indexes(connection, new)


def references_to(connection: sa.Connection, target: str) -> list[tuple[str, str]]:
    """``(table, column)`` of every foreign key of another table pointing at ``target``
    (archived columns included: they keep theirs)."""
    found = []
    for table in sa.inspect(connection).get_table_names():
        if table == target:
            continue
        for column, reference in live_references(connection, table)[0].items():
            if reference.target == target:
                found.append((table, column))
    return found


def drop_object_table(connection: sa.Connection, name: str) -> None:
    """Drop an object's table (its indexes and constraints go with it).

    The caller has made sure no other table points at it. On SQLite, ``DROP TABLE`` first
    deletes every row with foreign keys enforced, so the table's own self-references
    (a hierarchy's parent, live or archived) are cleared first: ``RESTRICT`` would refuse
    deleting a parent before its children.
    """
    table = table_name(name)
    if _sqlite(connection):
        own = [c for c, r in live_references(connection, table)[0].items() if r.target == table]
        if own:
            rows = sa.table(table, *(sa.column(c) for c in own))
            connection.execute(sa.update(rows).values(dict.fromkeys(own)))
    _operations(connection).drop_table(table)


# --- the physical table as the database holds it ------------------------------------


@dataclass(frozen=True)
class PhysicalColumn:
    """One column as the catalog describes it; ``source`` is what a rebuild copies into it."""

    name: str
    type: sa.types.TypeEngine[Any]
    nullable: bool
    default: str | None
    primary_key: bool
    reference: Reference | None
    source: str | None


@dataclass(frozen=True)
class PhysicalTable:
    """An object's table read from the catalog: columns, foreign keys and their names."""

    name: str
    columns: dict[str, PhysicalColumn]
    constraint_names: dict[str, str]  # column → name of its foreign key (PostgreSQL)

    @classmethod
    def read(cls, connection: sa.Connection, name: str) -> PhysicalTable:
        """The table ``name`` as the database's catalog describes it now."""
        inspector = sa.inspect(connection)
        primary = set(inspector.get_pk_constraint(name)["constrained_columns"])
        references, names = live_references(connection, name)
        columns = {
            c["name"]: PhysicalColumn(
                c["name"],
                c["type"],
                bool(c["nullable"]),
                c.get("default"),
                c["name"] in primary,
                references.get(c["name"]),
                c["name"],
            )
            for c in inspector.get_columns(name)
        }
        return cls(name, columns, names)

    def refresh(self, connection: sa.Connection) -> PhysicalTable:
        """Read again: an earlier step of the same change may have altered the table."""
        return PhysicalTable.read(connection, self.name)

    def reference(self, column: str) -> Reference | None:
        """The foreign key on ``column``, or ``None`` (also for a column the table lacks)."""
        found = self.columns.get(column)
        return found.reference if found is not None else None


def live_references(
    connection: sa.Connection, table: str
) -> tuple[dict[str, Reference], dict[str, str]]:
    """The single-column foreign keys of ``table`` by column, and their names.

    SQLite's own ``PRAGMA foreign_key_list`` is read rather than SQLAlchemy's reflection,
    which cannot parse the ON DELETE rule of a column added by ``ALTER TABLE ADD COLUMN``.
    """
    if connection.dialect.name == "sqlite":
        rows = connection.exec_driver_sql(f"PRAGMA foreign_key_list({_quote(connection, table)})")
        found = {row[3]: Reference(row[2], str(row[6]).upper()) for row in rows}
        return found, {}
    references: dict[str, Reference] = {}
    names: dict[str, str] = {}
    for fk in sa.inspect(connection).get_foreign_keys(table):
        if len(fk["constrained_columns"]) != 1:
            continue
        column = fk["constrained_columns"][0]
        rule = str(fk["options"].get("ondelete") or "NO ACTION").upper()
        references[column] = Reference(str(fk["referred_table"]), rule)
        names[column] = str(fk["name"])
    return references, names


def _quote(connection: sa.Connection, identifier: str) -> str:
    return str(connection.dialect.identifier_preparer.quote(identifier))


def _sqlite(connection: sa.Connection) -> bool:
    return connection.dialect.name == "sqlite"


# --- checks that run before any ALTER -------------------------------------------------


def _archived_match(
    connection: sa.Connection, physical: PhysicalTable, spec: FieldSpec
) -> str | None:
    """The newest archived column that can come back as ``spec``, if any.

    It comes back only with the column type the field now wants (the case of restoring
    a version) and, for a reference, pointing at the same target; otherwise the field
    gets a fresh column and the old data stays archived.
    """
    archived = sorted(
        (int(match.group(1)), name)
        for name in physical.columns
        if (match := ARCHIVE_RE.match(name)) and match.group(2) == spec.name
    )
    if not archived:
        return None
    _, name = archived[-1]
    column = physical.columns[name]
    if not _same_type(connection, column.type, spec.column_type()):
        return None
    wanted = wanted_reference(spec)
    if column.reference is not None and (
        wanted is None or column.reference.target != wanted.target
    ):
        return None
    return name


def _same_type(
    connection: sa.Connection, stored: sa.types.TypeEngine[Any], wanted: sa.types.TypeEngine[Any]
) -> bool:
    dialect = connection.dialect
    return str(stored.compile(dialect)) == str(wanted.compile(dialect))


def _check_structure(
    connection: sa.Connection,
    physical: PhysicalTable,
    new: ObjectDefinition,
    removed: Iterable[str],
    additions: dict[str, str | None],
    changed: list[str],
) -> None:
    """Refuse, naming records, what the constraints could not hold or SQLite could not rebuild."""
    details: list[dict[str, str]] = []
    rebuilds: list[str] = []
    for field_name, archived in additions.items():
        spec = new.fields[field_name]
        details += _addition_problems(connection, physical, spec, archived)
        if archived is not None and _unarchive_needs_rebuild(physical, archived, spec):
            rebuilds.append(field_name)
    for field_name in removed:
        if not physical.columns[field_name].nullable:
            rebuilds.append(field_name)
    for field_name in changed:
        wanted = wanted_reference(new.fields[field_name])
        if wanted is not None and wanted != physical.reference(field_name):
            details += _reference_problems(connection, physical, field_name, field_name, wanted)
            rebuilds.append(field_name)
    if _sqlite(connection) and rebuilds and not details:
        details += _rebuild_problems(connection, physical.name, rebuilds)
    if details:
        raise IncompatibleChange(
            N_("the stored data cannot survive this change; nothing was changed"), details
        )


def _addition_problems(
    connection: sa.Connection, physical: PhysicalTable, spec: FieldSpec, archived: str | None
) -> list[dict[str, str]]:
    if archived is None:
        if not is_master_detail(spec):
            return []
        # A new NOT NULL column: every stored record (deleted ones too) would lack it.
        ids = _ids(connection, sa.select(sa.table(physical.name, sa.column("id")).c.id))
        return _named(
            spec.name,
            ids,
            N_(
                "existing record(s) would have no master (a new "
                "master-detail field needs an object without records)"
            ),
        )
    problems: list[dict[str, str]] = []
    if is_master_detail(spec):
        table = sa.table(physical.name, sa.column("id"), sa.column(archived))
        ids = _ids(connection, sa.select(table.c.id).where(table.c[archived].is_(None)))
        problems += _named(
            spec.name, ids, N_("record(s) have no master (made while the field was removed)")
        )
    wanted = wanted_reference(spec)
    if wanted is not None and physical.reference(archived) != wanted:
        problems += _reference_problems(connection, physical, archived, spec.name, wanted)
    return problems


def _reference_problems(
    connection: sa.Connection, physical: PhysicalTable, column: str, field: str, wanted: Reference
) -> list[dict[str, str]]:
    """Records of ``column`` that point at no row of the target: a foreign key would refuse them."""
    ids = orphans(connection, physical.name, column, wanted.target)
    return _named(field, ids, _pointing_at_nothing(wanted.target))


def _pointing_at_nothing(target: str) -> Message:
    return N_("record(s) point at %(object)s rows that do not exist", object=target)


def orphans(connection: sa.Connection, table: str, column: str, target: str) -> list[int]:
    """Ids of the rows of ``table`` whose ``column`` names no id of ``target``."""
    child = sa.table(table, sa.column("id"), sa.column(column))
    parent = sa.table(target, sa.column("id"))
    exists = sa.exists().where(parent.c.id == child.c[column])
    query = sa.select(child.c.id).where(child.c[column].is_not(None), ~exists)
    return _ids(connection, query)


def _ids(connection: sa.Connection, query: sa.Select[Any]) -> list[int]:
    return list(connection.execute(query.order_by(sa.column("id"))).scalars())


def _named(field: str, ids: list[int], what: Message) -> list[dict[str, str]]:
    """One detail naming up to ``MAX_OFFENDERS_SHOWN`` record ids, and how many more."""
    if not ids:
        return []
    shown = _ids_shown(ids)
    return [
        {
            "field": field,
            "message": N_("%(count)s %(what)s: ids %(ids)s", count=len(ids), what=what, ids=shown),
        }
    ]


def _ids_shown(ids: list[int]) -> str:
    """Up to ``MAX_OFFENDERS_SHOWN`` ids, and how many more."""
    shown = ", ".join(str(i) for i in ids[:MAX_OFFENDERS_SHOWN])
    more = len(ids) - MAX_OFFENDERS_SHOWN
    if more > 0:
        return N_("%(ids)s and %(count)s more", ids=shown, count=more)
    return shown


def _shown(value: Any) -> str:
    """A stored value as a refusal quotes it: its repr, never more than 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _unarchive_needs_rebuild(physical: PhysicalTable, archived: str, spec: FieldSpec) -> bool:
    column = physical.columns[archived]
    return column.reference != wanted_reference(spec) or column.nullable == is_master_detail(spec)


def _rebuild_problems(
    connection: sa.Connection, table: str, fields: list[str]
) -> list[dict[str, str]]:
    """Why SQLite may not rebuild ``table`` now: the rows pointing at it (none if FKs are off)."""
    pointing = rows_pointing_at(connection, table)
    if not pointing:
        return []
    where = ", ".join(f"{count} in {source}" for source, count in pointing)
    message = N_(
        "SQLite must rebuild the table for this change, and dropping the old copy would "
        "fire the ON DELETE rules of the records that point at it (%(where)s); "
        "clear those references first",
        where=where,
    )
    return [{"field": field, "message": message} for field in fields]


def rows_pointing_at(connection: sa.Connection, target: str) -> list[tuple[str, int]]:
    """``(table.column, count)`` of every non-null foreign key value pointing at ``target``.

    Empty when foreign keys are off for this connection: a rebuild then fires nothing.
    """
    if _sqlite(connection) and not connection.exec_driver_sql("PRAGMA foreign_keys").scalar():
        return []
    found = []
    for table in sa.inspect(connection).get_table_names():
        for column, reference in live_references(connection, table)[0].items():
            if reference.target != target:
                continue
            source = sa.table(table, sa.column(column))
            count = connection.execute(
                sa.select(sa.func.count()).select_from(source).where(source.c[column].is_not(None))
            ).scalar_one()
            if count:
                found.append((f"{table}.{column}", int(count)))
    return found


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
        if reference_table(before) != reference_table(after) or (
            before.type.name == "master_detail"
        ) != (after.type.name == "master_detail"):
            details.append(
                {
                    "field": field_name,
                    "message": N_(
                        "a reference cannot change its target or kind; "
                        "remove the field and add a new one"
                    ),
                }
            )
            continue
        offenders = _offending_rows(connection, table, before, after)
        if offenders:
            details.append(
                {
                    "field": field_name,
                    "message": N_(
                        "%(count)s existing record(s) cannot become %(type)s as defined: "
                        "ids %(ids)s",
                        count=len(offenders),
                        type=after.type.name,
                        ids=_ids_shown(offenders),
                    ),
                }
            )
            continue
        if after.unique and not before.unique:
            duplicates = _duplicate_values(connection, table, field_name)
            if duplicates:
                details.append(
                    {
                        "field": field_name,
                        "message": N_(
                            "existing records share values, so the field cannot be unique: "
                            "%(values)s",
                            values=", ".join(_shown(v) for v in duplicates[:MAX_OFFENDERS_SHOWN]),
                        ),
                    }
                )
    if details:
        raise IncompatibleChange(
            N_("the stored data cannot survive this change; nothing was changed"), details
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


# --- the ALTERs ----------------------------------------------------------------------


def _archive_column(
    connection: sa.Connection, ops: Operations, physical: PhysicalTable, column: str, archived: str
) -> None:
    """Rename a removed field's column out of the way; it keeps its foreign key.

    A kept foreign key holds the archived pointers valid for the day the field comes
    back; the platform never hard-deletes, so its ON DELETE rule fires for nobody.
    A master-detail column loses its NOT NULL: new records will not fill it.
    """
    nullable = physical.columns[column].nullable
    if _sqlite(connection):
        if nullable:
            ops.alter_column(physical.name, column, new_column_name=archived)
        else:
            rebuild_sqlite_table(
                connection, physical, {column: {"name": archived, "nullable": True}}
            )
        return
    ops.alter_column(physical.name, column, new_column_name=archived)
    if column in physical.constraint_names:
        _rename_constraint(connection, physical.name, physical.constraint_names[column], archived)
    if not nullable:
        ops.alter_column(physical.name, archived, nullable=True, existing_type=sa.BigInteger())


def _rename_constraint(connection: sa.Connection, table: str, old_name: str, column: str) -> None:
    new_name = fk_name(table, column)
    if new_name != old_name:
        q = _quote
        connection.exec_driver_sql(
            f"ALTER TABLE {q(connection, table)} RENAME CONSTRAINT "
            f"{q(connection, old_name)} TO {q(connection, new_name)}"
        )


def _add_column(connection: sa.Connection, ops: Operations, table: str, spec: FieldSpec) -> None:
    """A fresh column for a new field, with its foreign key."""
    column = field_column(spec, table)
    reference = wanted_reference(spec)
    if not _sqlite(connection) or reference is None:
        ops.add_column(table, column)  # PostgreSQL: the column, then its named constraint
        return
    # SQLite's ADD COLUMN takes the foreign key only in its column-constraint form.
    q = _quote
    connection.exec_driver_sql(
        f"ALTER TABLE {q(connection, table)} ADD COLUMN {q(connection, spec.name)} "
        f"{spec.column_type().compile(connection.dialect)} "
        f"CONSTRAINT {q(connection, fk_name(table, spec.name))} "
        f"REFERENCES {q(connection, reference.target)} (id) ON DELETE {reference.on_delete}"
    )
    if is_master_detail(spec):  # and the table is empty (checked): NOT NULL needs a rebuild
        physical = PhysicalTable.read(connection, table)
        rebuild_sqlite_table(connection, physical, {spec.name: {"nullable": False}})


def _unarchive_column(
    connection: sa.Connection,
    ops: Operations,
    physical: PhysicalTable,
    archived: str,
    spec: FieldSpec,
) -> None:
    """Bring an archived column back as ``spec``, with the foreign key and NOT NULL it wants."""
    wanted = wanted_reference(spec)
    if _sqlite(connection):
        if not _unarchive_needs_rebuild(physical, archived, spec):
            ops.alter_column(physical.name, archived, new_column_name=spec.name)
        else:
            change = {
                "name": spec.name,
                "nullable": not is_master_detail(spec),
                "reference": wanted,
            }
            rebuild_sqlite_table(connection, physical, {archived: change})
        return
    ops.alter_column(physical.name, archived, new_column_name=spec.name)
    live = physical.reference(archived)
    if live == wanted and archived in physical.constraint_names:
        _rename_constraint(
            connection, physical.name, physical.constraint_names[archived], spec.name
        )
    elif live != wanted:
        if archived in physical.constraint_names:
            ops.drop_constraint(physical.constraint_names[archived], physical.name, "foreignkey")
        if wanted is not None:
            _create_reference(ops, physical.name, spec.name, wanted)
    if is_master_detail(spec):
        ops.alter_column(physical.name, spec.name, nullable=False, existing_type=sa.BigInteger())


def _create_reference(ops: Operations, table: str, column: str, reference: Reference) -> None:
    ops.create_foreign_key(
        fk_name(table, column),
        table,
        reference.target,
        [column],
        ["id"],
        ondelete=None if reference.on_delete == "NO ACTION" else reference.on_delete,
    )


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
    if _same_type(connection, before_type, after_type):
        _change_reference(connection, ops, table.name, after)
        return
    if _same_family(before_type, after_type):
        if not _sqlite(connection):
            ops.alter_column(table.name, before.name, type_=after_type, existing_type=before_type)
            return
        if not rows_pointing_at(connection, table.name):
            physical = PhysicalTable.read(connection, table.name)
            rebuild_sqlite_table(connection, physical, {before.name: {"type": after_type}})
            return
        # Rows point at this table, so SQLite may not rebuild it: copy into a new column.
    _convert_column(connection, ops, table, before, after, new_version)


def _change_reference(
    connection: sa.Connection, ops: Operations, table: str, spec: FieldSpec
) -> None:
    """Give a lookup the ON DELETE rule it now asks for (checked before: nothing blocks it)."""
    wanted = wanted_reference(spec)
    physical = PhysicalTable.read(connection, table)
    if wanted is None or physical.reference(spec.name) == wanted:
        return
    if _sqlite(connection):
        rebuild_sqlite_table(connection, physical, {spec.name: {"reference": wanted}})
        return
    if spec.name in physical.constraint_names:
        ops.drop_constraint(physical.constraint_names[spec.name], table, "foreignkey")
    _create_reference(ops, table, spec.name, wanted)


def _convert_column(
    connection: sa.Connection,
    ops: Operations,
    table: sa.Table,
    before: FieldSpec,
    after: FieldSpec,
    new_version: int,
) -> None:
    """Change a column's type by copying converted values; the old column is archived.

    Plain ADD COLUMN and RENAME COLUMN only: neither rebuilds a table on SQLite.
    """
    temporary = f"_converting_{after.name}"
    ops.add_column(table.name, sa.Column(temporary, after.column_type(), nullable=True))
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
    ops.alter_column(
        table.name, before.name, new_column_name=f"_archived_v{new_version}_{before.name}"
    )
    ops.alter_column(table.name, temporary, new_column_name=after.name)


# --- SQLite: rebuilding a table ----------------------------------------------------------


def rebuild_sqlite_table(
    connection: sa.Connection, physical: PhysicalTable, changes: dict[str, dict[str, Any]]
) -> None:
    """Rebuild a SQLite table with some columns changed (``name``, ``nullable``, ``type``,
    ``reference``): create the new shape, copy the rows, drop the old, rename the new.

    Dropping the old table fires the ON DELETE rules of every row pointing at it while
    foreign keys are on, so the rebuild is refused then (the caller checked and named the
    rows already; this is the last guard). Indexes go with the old table: the caller
    re-creates them (``sync_indexes``).
    """
    problems = _rebuild_problems(connection, physical.name, list(changes))
    if problems:
        raise IncompatibleChange(N_("SQLite cannot rebuild this table now"), problems)
    columns = [replace(c, **changes.get(c.name, {})) for c in physical.columns.values()]
    temporary = f"_rebuild_{physical.name}"
    shape = _shape(temporary, physical.name, columns)
    shape.create(connection)
    copied = [c for c in columns if c.source is not None]
    old = sa.table(physical.name, *(sa.column(str(c.source)) for c in copied))
    connection.execute(sa.insert(shape).from_select([c.name for c in copied], sa.select(*old.c)))
    q = _quote
    connection.exec_driver_sql(f"DROP TABLE {q(connection, physical.name)}")
    connection.exec_driver_sql(
        f"ALTER TABLE {q(connection, temporary)} RENAME TO {q(connection, physical.name)}"
    )


def _shape(name: str, final: str, columns: list[PhysicalColumn]) -> sa.Table:
    """The ``Table`` to rebuild as: foreign keys named after the final table, not ``name``."""
    scratch = sa.MetaData()
    for column in columns:
        target = column.reference.target if column.reference else None
        if target is not None and target not in scratch.tables:
            sa.Table(target, scratch, sa.Column("id", BigId, primary_key=True))
    constraints = [
        sa.ForeignKeyConstraint(
            [c.name],
            [f"{c.reference.target}.id"],
            name=fk_name(final, c.name),
            ondelete=None if c.reference.on_delete == "NO ACTION" else c.reference.on_delete,
        )
        for c in columns
        if c.reference is not None
    ]
    return sa.Table(
        name,
        scratch,
        *(
            sa.Column(
                c.name,
                c.type,
                nullable=c.nullable,
                primary_key=c.primary_key,
                server_default=sa.text(c.default) if c.default is not None else None,
            )
            for c in columns
        ),
        *constraints,
    )


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


# --- instances made before foreign keys: ``trellis init`` adds what is missing ---------


@dataclass(frozen=True)
class MissingConstraint:
    """A foreign key or NOT NULL an object's definition implies and its table lacks."""

    table: str
    column: str
    reference: Reference | None  # the foreign key to add, or None
    not_null: bool

    def describe(self) -> str:
        """One line for a report, e.g. ``obj_order.customer: foreign key to obj_customer
        (ON DELETE RESTRICT) and NOT NULL``.
        """
        parts = []
        if self.reference is not None:
            rule = self.reference.on_delete
            parts.append(f"foreign key to {self.reference.target} (ON DELETE {rule})")
        if self.not_null:
            parts.append("NOT NULL")
        return f"{self.table}.{self.column}: " + " and ".join(parts)


def missing_constraints(
    connection: sa.Connection, definition: ObjectDefinition
) -> list[MissingConstraint]:
    """What the catalog lacks of the definition's references (archived columns aside:
    they get their foreign key when a later version brings them back)."""
    physical = PhysicalTable.read(connection, table_name(definition.name))
    missing = []
    for spec in definition.lookups():
        column = physical.columns[spec.name]
        wanted = wanted_reference(spec)
        reference = wanted if column.reference != wanted else None
        not_null = is_master_detail(spec) and column.nullable
        if reference is not None or not_null:
            missing.append(MissingConstraint(physical.name, spec.name, reference, not_null))
    return missing


def add_missing_constraints(
    connection: sa.Connection, definitions: Iterable[ObjectDefinition]
) -> list[MissingConstraint]:
    """Add every missing foreign key and NOT NULL, or refuse naming the records in the way.

    On SQLite the caller must have switched foreign keys off for the connection (outside
    the transaction): the tables are rebuilt, and ``PRAGMA foreign_key_check`` confirms
    the result before the caller commits.
    """
    by_definition = [(d, missing_constraints(connection, d)) for d in definitions]
    details = [p for _, found in by_definition for m in found for p in _blockers(connection, m)]
    if details:
        raise IncompatibleChange(
            N_(
                "existing records stand in the way of the database constraints; nothing was changed"
            ),
            details,
        )
    ops = _operations(connection)
    for definition, found in by_definition:
        if found:
            _add_constraints(connection, ops, definition, found)
    if _sqlite(connection):
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise IncompatibleChange(
                N_("the rebuilt tables fail their foreign keys; nothing was changed"),
                [
                    {
                        "field": str(row[0]),
                        "message": N_(
                            "row %(row)s points at %(object)s", row=row[1], object=row[2]
                        ),
                    }
                    for row in broken[:MAX_OFFENDERS_SHOWN]
                ],
            )
    return [m for _, found in by_definition for m in found]


def _blockers(connection: sa.Connection, missing: MissingConstraint) -> list[dict[str, str]]:
    field = f"{missing.table}.{missing.column}"
    problems = []
    if missing.reference is not None:
        ids = orphans(connection, missing.table, missing.column, missing.reference.target)
        problems += _named(field, ids, _pointing_at_nothing(missing.reference.target))
    if missing.not_null:
        table = sa.table(missing.table, sa.column("id"), sa.column(missing.column))
        ids = _ids(connection, sa.select(table.c.id).where(table.c[missing.column].is_(None)))
        problems += _named(field, ids, N_("record(s) have no master"))
    return problems


def _add_constraints(
    connection: sa.Connection,
    ops: Operations,
    definition: ObjectDefinition,
    found: list[MissingConstraint],
) -> None:
    physical = PhysicalTable.read(connection, table_name(definition.name))
    if _sqlite(connection):
        changes: dict[str, dict[str, Any]] = {}
        for m in found:
            change = changes.setdefault(m.column, {})
            if m.reference is not None:
                change["reference"] = m.reference
            if m.not_null:
                change["nullable"] = False
        rebuild_sqlite_table(connection, physical, changes)
        _sync_indexes(connection, definition)  # the rebuild dropped them
        return
    for m in found:
        if m.reference is not None:
            if m.column in physical.constraint_names:
                ops.drop_constraint(physical.constraint_names[m.column], m.table, "foreignkey")
            _create_reference(ops, m.table, m.column, m.reference)
        if m.not_null:
            ops.alter_column(m.table, m.column, nullable=False, existing_type=sa.BigInteger())

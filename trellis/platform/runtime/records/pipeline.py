"""The write path as named steps (DESIGN §4), each a small function over a batch of drafts.

A create runs, for every record of the batch (one record is a batch of one):

    deserialise → check access → defaults → compute (BEFORE_VALIDATE hooks) →
    validate (schema + VALIDATE hooks) → to Python → check references → check unique
    → write → children → history / audit → AFTER_WRITE hooks → AFTER_COMMIT hooks

Checks that only need the record itself run per draft and record a problem on it rather
than raising, so a bulk request hears about every bad record at once. Checks that need
the database (references, uniqueness) and the writes run once per batch: one query per
lookup field, one multi-row INSERT, one history insert — the reason a bulk create is not
1,000 single creates.

Nothing here commits; the caller's transaction does, so any raise rolls back everything.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from trellis import defaults
from trellis.exceptions import (
    DuplicateValue,
    Forbidden,
    TrellisError,
    ValidationFailed,
)
from trellis.platform.messages import N_
from trellis.platform.metadata.fieldtypes import FieldConversionError
from trellis.platform.metadata.names import SYSTEM_COLUMNS
from trellis.platform.metadata.permissions import Operation
from trellis.platform.runtime import audit, computed, hierarchy
from trellis.platform.runtime.access import OPERATIONS
from trellis.platform.runtime.models import AutonumberCounter, RecordHistory
from trellis.platform.runtime.query import among_param
from trellis.platform.runtime.records import attachments
from trellis.platform.runtime.records.hooks import (
    Action,
    Hook,
    HookFunction,
    HookRegistry,
    WriteEvent,
)
from trellis.platform.runtime.records.serialise import Record, system_json

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.metadata.fieldtypes import FieldSpec
    from trellis.platform.runtime.access import Access
    from trellis.platform.runtime.identity import Caller
    from trellis.platform.runtime.registry import MetaRegistry, ObjectMeta

_HISTORY = cast("sa.Table", RecordHistory.__table__)
_COUNTERS = cast("sa.Table", AutonumberCounter.__table__)
_HISTORY_INSERT = sa.insert(_HISTORY)
_NEXT_NUMBER: dict[str, Any] = {}
# The master's id is not known until the master is written; any valid id stands in for it
# while its children are checked (reference checks skip the master field).
_MASTER_PLACEHOLDER = 1


@dataclass
class WriteUnit:
    """What every step needs: the transaction, the metadata, the caller and their rights."""

    session: Session
    registry: MetaRegistry
    access: Access
    caller: Caller | None
    hooks: HookRegistry

    @property
    def user_id(self) -> int | None:
        """The caller's user id, ``None`` for the system."""
        return self.caller.user_id if self.caller else None

    @cached_property
    def dialect(self) -> str:
        """The session's dialect name (``postgresql`` or ``sqlite``), read once per unit."""
        return self.session.get_bind().dialect.name

    @cached_property
    def _wanted(self) -> dict[tuple[Any, ...], list[HookFunction]]:
        return {}

    def hook_functions(self, hook: Hook, meta: ObjectMeta) -> list[HookFunction]:
        """``hooks.wanted`` for writes of ``meta``, kept for the unit: asked per record, it
        changes only with the metadata's revision or the hooks registered."""
        key = (hook, meta.name, meta.version, self.registry.revision, self.hooks.generation)
        found = self._wanted.get(key)
        if found is None:
            found = self._wanted[key] = self.hooks.wanted(hook, meta, self.registry)
        return found


@dataclass
class Draft:
    """One record on its way through the pipeline."""

    meta: ObjectMeta
    raw: Any  # the JSON as sent
    index: int = 0
    action: Action = Action.CREATE
    master: tuple[str, int | None] | None = None  # (master field, master id) of a child
    payload: dict[str, Any] = field(default_factory=dict)  # JSON values being written
    children: list[tuple[tuple[str, FieldSpec], list[Any]]] = field(default_factory=list)
    child_drafts: list[tuple[FieldSpec, list[Draft]]] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)  # Python values for the columns
    record_id: int | None = None
    old: Record | None = None  # an update's stored record
    error: TrellisError | None = None
    record: Record | None = None  # the written record, as JSON
    notes: dict[str, Any] = field(default_factory=dict)  # the hooks' (``WriteEvent.notes``)

    @property
    def ok(self) -> bool:
        """True while no step has refused this record."""
        return self.error is None


def each(drafts: list[Draft], step: Any, *args: Any) -> None:
    """Run a per-record step on every draft still without a problem, recording problems."""
    for draft in drafts:
        if draft.error is None:
            try:
                step(draft, *args)
            except TrellisError as exc:
                draft.error = exc


def good(drafts: list[Draft]) -> list[Draft]:
    """The drafts no step has refused, in order."""
    return [d for d in drafts if d.error is None]


# --- deserialise -----------------------------------------------------------------------


def deserialise(draft: Draft) -> None:
    """The JSON object, its children set aside, platform keys refused."""
    if not isinstance(draft.raw, dict):
        raise ValidationFailed(
            "a record must be a JSON object", [{"field": "", "message": N_("not an object")}]
        )
    payload = dict(draft.raw)
    draft.children = pop_children(draft.meta, payload)
    refuse_platform_keys(draft.meta, payload, allow_children=True)
    exact_amounts(draft.meta, payload)
    draft.payload = payload


def exact_amounts(meta: ObjectMeta, payload: dict[str, Any]) -> None:
    """Currency amounts sent as JSON strings ("1234.50") become exact Decimals; a string
    that is not an amount is left for validation to refuse."""
    for name in meta.currency_fields:
        value = payload.get(name)
        if isinstance(value, str) and AMOUNT.fullmatch(value):
            payload[name] = Decimal(value)


# A currency amount sent as a JSON string: digits, an optional fraction, bounded.
AMOUNT = re.compile(r"[+-]?\d{1,30}(\.\d{1,12})?")


def pop_children(
    meta: ObjectMeta, payload: dict[str, Any]
) -> list[tuple[tuple[str, FieldSpec], list[Any]]]:
    """Take the master-detail lines (``{"lines": [...]}``) out of a parent's payload."""
    children = []
    for child_name, spec in meta.children:
        related = str(spec.related_name)
        if related not in payload:
            continue
        items = payload.pop(related)
        if not isinstance(items, list):
            raise ValidationFailed(
                f"{related} must be a list of {child_name} records",
                [{"field": related, "message": N_("must be a list")}],
            )
        if len(items) > defaults.MAX_CHILDREN_PER_RECORD:
            raise ValidationFailed(
                f"at most {defaults.MAX_CHILDREN_PER_RECORD} {related} per record",
                [{"field": related, "message": N_("too many")}],
            )
        children.append(((child_name, spec), items))
    return children


def refuse_platform_keys(meta: ObjectMeta, payload: dict[str, Any], allow_children: bool) -> None:
    """System columns and read-only fields are the platform's to set."""
    if meta.guarded_keys.isdisjoint(payload):
        return  # the usual case, decided by one set operation
    details = []
    related = {str(spec.related_name) for _, spec in meta.children}
    for key in payload:
        if key in SYSTEM_COLUMNS:
            details.append({"field": key, "message": N_("is set by the platform")})
        elif key in related and not allow_children:
            details.append(
                {"field": key, "message": N_("children are changed through their own records")}
            )
        elif key in meta.fields and not meta.fields[key].writable:
            details.append({"field": key, "message": N_("is read-only")})
    if details:
        raise ValidationFailed("the record sets fields it may not set", details)


# --- access ------------------------------------------------------------------------------


def check_field_access(draft: Draft, unit: WriteUnit) -> None:
    """Writing a field the caller may only read (or not see) is refused, naming it."""
    unit.access.require_writable(draft.meta, list(draft.payload))


def bypass_event(
    unit: WriteUnit, meta: ObjectMeta, operation: Operation, target: Any
) -> dict[str, Any] | None:
    """The ``admin.bypass`` event of an administrator doing what their roles do not grant."""
    if not unit.access.bypasses(meta, operation):
        return None
    assert unit.caller is not None
    return audit.event(
        "admin.bypass",
        actor_id=unit.caller.user_id,
        actor_email=unit.caller.email,
        target=f"{meta.name}/{target}" if target else meta.name,
        detail={"operation": str(operation)},
    )


def audit_bypass(unit: WriteUnit, meta: ObjectMeta, operation: Operation, target: Any) -> None:
    """Admins may do what their roles do not grant; each such write is on the record."""
    event = bypass_event(unit, meta, operation, target)
    if event is not None:
        audit.write(unit.session, event)


def require_in_scope(
    unit: WriteUnit, meta: ObjectMeta, ids: list[int], operation: Operation
) -> None:
    """403 when a record (as it now stands, in this transaction) is outside the scope."""
    condition = unit.access.condition(meta, operation)
    if condition is None or not ids:
        return
    inside = set(
        unit.session.scalars(
            sa.select(meta.table.c.id).where(meta.table.c.id.in_(ids), condition)
        ).all()
    )
    if len(inside) < len(set(ids)):
        raise Forbidden(
            N_(
                "this %(object)s would be outside what you may %(operation)s",
                object=meta.name,
                operation=OPERATIONS[operation],
            ),
            [
                {
                    "field": meta.name,
                    "message": N_(
                        "outside your %(operation)s scope", operation=OPERATIONS[operation]
                    ),
                }
            ],
        )


# --- defaults, compute, validate -------------------------------------------------------


def apply_defaults(draft: Draft) -> None:
    """A child's master, and each field's default where the record gives no value."""
    if draft.master is not None:
        master_field, master_id = draft.master
        draft.payload[master_field] = master_id or _MASTER_PLACEHOLDER
    for name, spec in draft.meta.fields.items():
        if name not in draft.payload and spec.has_default:
            draft.payload[name] = spec.default


def event_of(unit: WriteUnit, draft: Draft) -> WriteEvent:
    """The hook event of a draft: its values are the stored record overlaid with the
    payload for an update, the payload alone for a create.
    """
    values = (
        draft.payload
        if draft.old is None
        else {**field_values(draft.meta, draft.old), **draft.payload}
    )
    return WriteEvent(
        meta=draft.meta,
        action=draft.action,
        values=values,
        session=unit.session,
        caller=unit.caller,
        record_id=draft.record_id,
        old=draft.old,
        notes=draft.notes,
        registry=unit.registry,
    )


def compute(draft: Draft, unit: WriteUnit) -> None:
    """Fields not shown dropped and formulas computed (``computed.prepare``), then the
    ``BEFORE_VALIDATE`` hooks."""
    computed.prepare(draft, unit)
    functions = unit.hook_functions(Hook.BEFORE_VALIDATE, draft.meta)
    if not functions:
        return
    event = event_of(unit, draft)
    unit.hooks.run(Hook.BEFORE_VALIDATE, event, functions)
    if draft.old is None:
        draft.payload = event.values
    else:  # an update writes what the hooks changed on top of what the caller sent
        old = field_values(draft.meta, draft.old)
        draft.payload.update({k: v for k, v in event.values.items() if old.get(k) != v})


def validate(draft: Draft, unit: WriteUnit) -> None:
    """The compiled JSON Schema, then the ``VALIDATE`` hooks (validation rules)."""
    merged = (
        draft.payload
        if draft.old is None
        else {**field_values(draft.meta, draft.old), **draft.payload}
    )
    draft.meta.validate(
        {k: float(v) if isinstance(v, Decimal) else v for k, v in merged.items() if v is not None}
    )  # an amount sent as a string is checked as the number it is (exact from here on)
    computed.check(draft, unit)
    functions = unit.hook_functions(Hook.VALIDATE, draft.meta)
    if functions:
        unit.hooks.run(Hook.VALIDATE, event_of(unit, draft), functions)


def to_python(draft: Draft) -> None:
    """JSON values converted by their field types into what the columns hold."""
    values, details = {}, []
    for name, value in draft.payload.items():
        try:
            values[name] = draft.meta.fields[name].to_python(value)
        except FieldConversionError as exc:
            details.append({"field": name, "message": exc.message})
    if details:
        raise ValidationFailed("the record is not valid", details)
    draft.values = values


# --- database checks, one query per field for the whole batch --------------------------


def check_references(unit: WriteUnit, meta: ObjectMeta, drafts: list[Draft]) -> None:
    """Each lookup points at a live record the caller may read, which stays live.

    The referenced rows are locked (``FOR SHARE`` on PostgreSQL) until the transaction
    ends, so a concurrent soft delete of the target waits for this write and then sees
    it (and refuses), or wins first and this check no longer finds the target. On SQLite
    writers are serialised, so there is no window to close. User and file fields are
    checked too (``attachments``).
    """
    attachments.check_users_and_files(unit, meta, drafts)
    for name, spec in meta.fields.items():
        if spec.target is None:
            continue
        wanted = {
            d.values[name]
            for d in drafts
            if d.ok and d.values.get(name) is not None and not _is_master_field(d, name)
        }
        if not wanted:
            continue
        found = live_ids(unit, spec.target, wanted)
        for draft in drafts:
            value = draft.values.get(name)
            if (
                draft.ok
                and value is not None
                and value not in found
                and not _is_master_field(draft, name)
            ):
                draft.error = ValidationFailed(
                    "the record refers to records that do not exist",
                    [
                        {
                            "field": name,
                            "message": N_(
                                "no %(object)s with id %(id)s", object=spec.target, id=value
                            ),
                        }
                    ],
                )


def live_ids(
    unit: WriteUnit, target_name: str, ids: set[int], *, as_caller: bool = True
) -> set[int]:
    """Which of ``ids`` are live ``target_name`` records, locked shared until commit.

    ``as_caller``: only those the caller may read (a record the caller may not read does
    not exist for them); without it, the system's view (a restore checks that its targets
    are alive, not that they are visible).
    """
    target = unit.registry.get(target_name)
    visible = None
    if as_caller:
        visible = unit.access.condition(target, Operation.READ)
        if visible is None and not unit.access.allowed(target, Operation.READ):
            return set()
    dialect = unit.dialect
    if (
        visible is None
        and dialect == "postgresql"
        and ids <= computed.locked_live(unit.session, target_name)
    ):
        return set(ids)  # locked FOR UPDATE and found live by this transaction already
    statement = target.statement(("live_ids", dialect), lambda: _live_ids(target.table, dialect))
    if visible is not None:
        statement = statement.where(visible)
    return set(unit.session.scalars(statement, {"ids": sorted(ids)}).all())


def _live_ids(table: sa.Table, dialect: str) -> sa.Select[Any]:
    statement = sa.select(table.c.id).where(
        among_param(table.c.id, "ids", dialect), table.c.deleted_at.is_(None)
    )
    if dialect == "postgresql":
        statement = statement.with_for_update(read=True, of=table)
    return statement


def _is_master_field(draft: Draft, name: str) -> bool:
    return draft.master is not None and draft.master[0] == name


def check_unique(
    unit: WriteUnit, meta: ObjectMeta, drafts: list[Draft], exclude_id: int | None = None
) -> None:
    """Unique fields are free among live records, and within the batch itself.

    One query answers every unique field of the batch: the live rows holding any of the
    values, each with all its unique columns.
    """
    wanted: dict[str, dict[Any, int]] = {}
    for spec in meta.unique_fields:
        seen = _distinct_in_batch(meta, spec, drafts)
        if seen:
            wanted[spec.name] = seen
    if not wanted:
        return
    names, dialect = tuple(wanted), unit.dialect
    statement = meta.statement(
        ("unique", dialect, names, exclude_id is not None),
        lambda: _taken_values(meta.table, names, dialect, exclude_id is not None),
    )
    parameters: dict[str, Any] = {f"taken_{n}": list(seen) for n, seen in wanted.items()}
    if exclude_id is not None:
        parameters["exclude_id"] = exclude_id
    rows = unit.session.execute(statement, parameters).all()
    for position, (name, seen) in enumerate(wanted.items()):
        taken = {row[position] for row in rows} & seen.keys()
        for draft in drafts:
            value = draft.values.get(name)
            if draft.ok and value in taken:
                draft.error = _duplicate(meta, meta.fields[name], value, None)


def _taken_values(
    table: sa.Table, names: tuple[str, ...], dialect: str, excluding: bool
) -> sa.Select[Any]:
    """The live rows holding any of the values (``taken_<field>``) of the unique fields.

    ``deleted_at IS NULL`` is repeated inside each branch of the OR, so each branch
    matches its field's partial unique index: SQLite then searches both indexes (a
    "multi-index OR") instead of scanning one of them whole — measured at 50,000 rows
    and 500 values per field, 1.2 ms against 55 ms.
    """
    live = table.c.deleted_at.is_(None)
    holds = [sa.and_(among_param(table.c[name], f"taken_{name}", dialect), live) for name in names]
    statement = sa.select(*(table.c[name] for name in names)).where(sa.or_(*holds))
    if excluding:
        statement = statement.where(table.c.id != sa.bindparam("exclude_id"))
    return statement


def _distinct_in_batch(meta: ObjectMeta, spec: FieldSpec, drafts: list[Draft]) -> dict[Any, int]:
    """The values of a unique field in the batch (value → index); repeats are refused."""
    seen: dict[Any, int] = {}
    for draft in drafts:
        value = draft.values.get(spec.name)
        if not draft.ok or value is None:
            continue
        if value in seen:
            first = seen[value]
            draft.error = _duplicate(
                meta, spec, value, N_("record %(index)s of this request", index=first), first
            )
        else:
            seen[value] = draft.index
    return seen


def _duplicate(
    meta: ObjectMeta,
    spec: FieldSpec,
    value: Any,
    where: str | None,
    duplicate_of: int | None = None,
) -> DuplicateValue:
    """The refusal of a taken unique value; ``duplicate_of``: the index, in the same
    request, of the record that has it first (the detail carries it, so a caller such as
    the importer can name its own row)."""
    shown = repr(spec.to_json(value))
    message = (
        N_("%(value)s is already taken by %(where)s", value=shown, where=where)
        if where
        else N_("%(value)s is already taken", value=shown)
    )
    detail: dict[str, Any] = {"field": spec.name, "message": message}
    if duplicate_of is not None:
        detail["duplicate_of"] = duplicate_of
    return DuplicateValue(f"another {meta.name} already has this {spec.name}", [detail])


# --- children: checked before anything is written --------------------------------------


def prepare_children(unit: WriteUnit, drafts: list[Draft]) -> None:
    """Check every parent's lines as drafts of their own; a bad line marks its parent bad.

    Lines are checked before any parent is written, so a bulk request that skips invalid
    records never writes a parent whose lines would then fail.
    """
    by_child: dict[str, list[tuple[Draft, FieldSpec, list[Draft]]]] = defaultdict(list)
    for parent in good(drafts):
        for (child_name, spec), items in parent.children:
            child = unit.registry.get(child_name)
            lines = [
                Draft(child, item, index=i, master=(spec.name, None))
                for i, item in enumerate(items)
            ]
            parent.child_drafts.append((spec, lines))
            by_child[child_name].append((parent, spec, lines))
    for child_name, groups in by_child.items():
        lines = [line for _, _, group in groups for line in group]
        check_new(unit, unit.registry.get(child_name), lines)
        for parent, spec, group in groups:
            problems = _line_problems(spec, group)
            if problems and parent.ok:
                parent.error = ValidationFailed("some detail records are not valid", problems)


def _line_problems(spec: FieldSpec, lines: list[Draft]) -> list[dict[str, Any]]:
    problems: list[dict[str, Any]] = []
    for line in lines:
        if line.error is None:
            continue
        if not isinstance(line.error, ValidationFailed | DuplicateValue):
            raise line.error  # a line the caller may not write refuses the whole request
        prefix = f"{spec.related_name}[{line.index}]"
        problems.extend(
            {**d, "field": f"{prefix}.{d['field']}" if d.get("field") else prefix}
            for d in line.error.details
        )
    return problems


def check_new(unit: WriteUnit, meta: ObjectMeta, drafts: list[Draft]) -> None:
    """Every check of a create, for a batch of new records of one object (and their lines)."""
    unit.access.require(meta, Operation.CREATE)
    each(drafts, deserialise)
    each(drafts, check_field_access, unit)
    each(drafts, apply_defaults)
    each(drafts, compute, unit)
    each(drafts, validate, unit)
    each(drafts, to_python)
    check_references(unit, meta, drafts)
    check_unique(unit, meta, drafts)
    prepare_children(unit, drafts)


# --- writes ----------------------------------------------------------------------------


def write_new(unit: WriteUnit, meta: ObjectMeta, drafts: list[Draft], now: dt.datetime) -> None:
    """INSERT the checked drafts in one statement, then their lines, history and hooks."""
    if not drafts:
        return
    system = {
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "created_by": unit.user_id,
        "updated_by": unit.user_id,
        "owner_id": unit.user_id,
    }
    fields = meta.fields
    autonumbers = [spec for spec in fields.values() if spec.type.name == "autonumber"]
    for draft in drafts:
        if draft.master is not None:
            draft.values[draft.master[0]] = draft.master[1]
        for spec in autonumbers:
            draft.values[spec.name] = next_number(unit, meta, spec, now)
    # Every row names every field, so the rows make one multi-row INSERT.
    rows = [{name: d.values.get(name) for name in fields} for d in drafts]
    ids = _insert_returning_ids(unit, meta, rows, system)
    for draft, record_id in zip(drafts, ids, strict=True):
        draft.record_id = record_id
    computed.note_created(unit, meta, ids)
    _link_hierarchy(unit, meta, drafts)
    require_in_scope(unit, meta, ids, Operation.CREATE)
    if not computed.plan_of(unit.registry, meta).empty:
        for draft, row in zip(drafts, rows, strict=True):
            new = {**row, **system, "id": draft.record_id}
            computed.after_write(unit, meta, int(draft.record_id or 0), None, new)
    bypass = bypass_event(unit, meta, Operation.CREATE, ids[0] if len(ids) == 1 else None)
    stamps = system_json(system)  # the same for the whole batch
    history_rows = []
    for draft in drafts:
        values = meta.to_json(draft.values)
        draft.record = {"id": draft.record_id, "version": 1, **stamps, **values}
        changes = {k: [None, v] for k, v in values.items() if v is not None}
        history_rows.append(
            history_row(unit, meta, draft.record_id, Action.CREATE, 1, changes, now)
        )
    write_history(unit, history_rows, bypass)
    _write_children(unit, drafts, now)
    if _after_hooks(unit, meta):
        for draft in drafts:
            record = draft.record or {}
            after_write(unit, draft, {k: [None, record[k]] for k in fields})


def _insert_returning_ids(
    unit: WriteUnit, meta: ObjectMeta, rows: list[dict[str, Any]], system: dict[str, Any]
) -> list[int]:
    """Write the rows (their fields, and the ``system`` stamps they share) and return their
    ids, in the order of the rows; a hierarchy's rows take its writer lock
    (``hierarchy.writer_lock``) first.

    On PostgreSQL a batch takes its ids from the table's sequence first (one query) and
    is then one ``INSERT … SELECT … FROM json_to_recordset(:rows)``: the rows travel as
    one JSON document the server unpacks into the columns' types (a multi-row ``INSERT …
    RETURNING`` does not promise the order of what it returns, and an ``executemany``
    costs a parameter set per row on both sides). A single row's INSERT evaluates the
    lock in its RETURNING: no round trip of its own. SQLite gets one ``executemany``
    whose ``RETURNING`` SQLAlchemy returns in the order of the rows
    (``sort_by_parameter_order``; 6× a statement per row at 1,000 rows). The statements
    are built once per object version.
    """
    dialect = unit.dialect
    if len(rows) > 1 and dialect == "postgresql":
        if _is_hierarchy(meta):
            lock = meta.statement(("writer_lock",), lambda: sa.select(_writer_lock(meta)))
            unit.session.execute(lock)
        ids = list(unit.session.scalars(_NEXT_IDS, {"table": meta.table.name, "count": len(rows)}))
        stamps = {k: _json_of(v) if isinstance(v, dt.datetime) else v for k, v in system.items()}
        document = [{**row, **stamps, "id": i} for row, i in zip(rows, ids, strict=True)]
        # Every row names the same columns: every field, the system stamps, the id.
        statement = meta.statement(
            ("insert_json",), lambda: _insert_from_json(meta.table, list(document[0]))
        )
        unit.session.execute(statement, {"rows": json_document(document, _json_of)})
        return ids
    if len(rows) > 1:  # SQLite: one executemany whose RETURNING SQLAlchemy keeps in order
        many = meta.statement(
            ("insert_many",),
            lambda: sa.insert(meta.table).returning(meta.table.c.id, sort_by_parameter_order=True),
        )
        result = unit.session.execute(many, [{**row, **system} for row in rows])
        return list(result.scalars())
    statement = meta.statement(("insert_one", dialect), lambda: _insert_one(meta, dialect))
    return [unit.session.execute(statement, {**rows[0], **system}).scalar_one()]


def _writer_lock(meta: ObjectMeta) -> sa.ColumnElement[Any]:
    return hierarchy.lock_expression(meta.name)


def _insert_one(meta: ObjectMeta, dialect: str) -> sa.Insert:
    """``INSERT … RETURNING id`` (and, for a hierarchy on PostgreSQL, its writer lock)."""
    table = meta.table
    lock = [_writer_lock(meta)] if _is_hierarchy(meta) and dialect == "postgresql" else []
    return sa.insert(table).returning(table.c.id, *lock)


_NEXT_IDS = sa.text(
    "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :count)"
)


def _is_hierarchy(meta: ObjectMeta) -> bool:
    return meta.definition.hierarchy_field is not None


def _link_hierarchy(unit: WriteUnit, meta: ObjectMeta, drafts: list[Draft]) -> None:
    parent_field = meta.definition.hierarchy_field
    if parent_field is None:
        return
    nodes = [(cast(int, d.record_id), d.values.get(parent_field)) for d in drafts]
    hierarchy.link_new(unit.session, meta, nodes)
    unit.access.forget_trees()


def _write_children(unit: WriteUnit, parents: list[Draft], now: dt.datetime) -> None:
    by_child: dict[str, list[Draft]] = defaultdict(list)
    for parent in parents:
        for spec, lines in parent.child_drafts:
            for line in lines:
                line.master = (spec.name, parent.record_id)
            by_child[lines[0].meta.name if lines else ""].extend(lines)
    for child_name, lines in by_child.items():
        if lines:
            write_new(unit, unit.registry.get(child_name), lines, now)
    for parent in parents:
        assert parent.record is not None
        for spec, lines in parent.child_drafts:
            parent.record[str(spec.related_name)] = [line.record for line in lines]


def after_write(unit: WriteUnit, draft: Draft, changes: dict[str, list[Any]]) -> None:
    """``AFTER_WRITE`` hooks now, in the transaction; ``AFTER_COMMIT`` ones once it commits."""
    for hook in (Hook.AFTER_WRITE, Hook.AFTER_COMMIT):
        functions = unit.hook_functions(hook, draft.meta)
        if functions:
            event = event_of(unit, draft)
            event.values = dict(draft.record or event.values)
            event.changes = changes
            unit.hooks.run(hook, event, functions)


def _after_hooks(unit: WriteUnit, meta: ObjectMeta) -> bool:
    """Whether a write of ``meta`` has ``AFTER_WRITE`` or ``AFTER_COMMIT`` hooks to run."""
    return any(unit.hook_functions(h, meta) for h in (Hook.AFTER_WRITE, Hook.AFTER_COMMIT))


def next_number(unit: WriteUnit, meta: ObjectMeta, spec: FieldSpec, now: dt.datetime) -> str:
    """The next number of an autonumber field: one atomic upsert, safe under concurrency."""
    template = str(spec.schema["x-format"])
    parts = _date_parts(now)
    period = "".join(v for k, v in parts.items() if k in template) or "all"
    statement = _next_number_statement(unit.dialect)
    number = int(
        unit.session.execute(
            statement, {"object_name": meta.name, "field_name": spec.name, "period": period}
        ).scalar_one()
    )
    return format_number(template, number, now)


def _date_parts(now: dt.datetime) -> dict[str, str]:
    return {"{YYYY}": f"{now:%Y}", "{YY}": f"{now:%y}", "{MM}": f"{now:%m}", "{DD}": f"{now:%d}"}


def format_number(template: str, number: int, now: dt.datetime) -> str:
    """An autonumber format filled in: ``SO-{YYYY}-{0000}``, 7 → ``SO-2026-0007``."""
    text = template
    for key, value in _date_parts(now).items():
        text = text.replace(key, value)
    start = text.index("{0")
    end = text.index("}", start)
    width = end - start - 1
    return f"{text[:start]}{number:0{width}d}{text[end + 1 :]}"


def _next_number_statement(dialect: str) -> Any:
    """The counter upsert, built once per dialect (it is on every insert's path)."""
    statement = _NEXT_NUMBER.get(dialect)
    if statement is None:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = (
            insert(_COUNTERS)
            .values(
                object_name=sa.bindparam("object_name"),
                field_name=sa.bindparam("field_name"),
                period=sa.bindparam("period"),
                value=1,
            )
            .on_conflict_do_update(
                index_elements=["object_name", "field_name", "period"],
                set_={"value": _COUNTERS.c.value + 1},
            )
            .returning(_COUNTERS.c.value)
        )
        _NEXT_NUMBER[dialect] = statement
    return statement


def history_row(
    unit: WriteUnit,
    meta: ObjectMeta,
    record_id: int | None,
    action: str,
    version: int,
    changes: dict[str, Any],
    at: dt.datetime,
    *,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``record_history`` row: who changed what, when, to which version (and, for a
    transition, its ``detail``; rows without one leave the column out, NULL)."""
    row = {
        "object_name": meta.name,
        "record_id": record_id,
        "action": str(action),
        "version": version,
        "changes": changes,
        "changed_by": unit.user_id,
        "changed_at": at,
    }
    if detail is not None:
        row["detail"] = detail
    return row


def write_history(
    unit: WriteUnit, rows: list[dict[str, Any]], event: dict[str, Any] | None = None
) -> None:
    """Insert the history rows, and the write's audit event with them.

    On PostgreSQL that is one statement however many rows there are: they travel as one
    JSON document that ``json_to_recordset`` unpacks (1,000 rows in ≈ 11 ms, against
    ≈ 20–30 ms as an ``executemany``), and the event's INSERT rides along as a
    data-modifying CTE, so an administrator's write pays no round trip for its
    ``admin.bypass``. SQLite gets an ``executemany`` and the event on its own.
    """
    if unit.dialect == "postgresql":
        if rows or event is not None:
            parameters = {"rows": json_document(rows, _moment)}
            if event is not None:
                parameters.update(audit.cte_parameters(event))
            statement = _HISTORY_FROM_JSON if event is None else _HISTORY_FROM_JSON_WITH_EVENT
            unit.session.execute(statement, parameters)
        return
    if event is not None:
        audit.write(unit.session, event)
    if rows:
        unit.session.execute(_HISTORY_INSERT, rows)


def json_document(value: Any, default: Callable[[Any], Any]) -> str:
    """``value`` as the JSON text a batch statement binds: orjson (0.85 ms against 8.3 ms
    for the standard library on a 1,000-row batch); what orjson does not take (an
    integer beyond 64 bits, a key that is not text) goes through ``json.dumps``, which
    says what is wrong the same way."""
    try:
        return orjson.dumps(value, default=default).decode()
    except TypeError:
        return json.dumps(value, default=default)


def _moment(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _json_of(value: Any) -> Any:
    """A column's Python value in the text PostgreSQL reads it from (``json_to_recordset``)."""
    if isinstance(value, dt.date | dt.time):  # datetimes too
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)  # exact: the numeric column reads the text, not a float
    raise TypeError(f"{type(value).__name__} is not JSON")


def _insert_from_json(table: sa.Table, names: list[str] | None = None) -> sa.Insert:
    """``INSERT INTO table (…) SELECT … FROM json_to_recordset(:rows)``, in its column types.

    The columns ``names`` (by default every one but ``id``); a key a row lacks is NULL.
    """
    columns = [table.c[n] for n in names] if names else [c for c in table.columns if c.name != "id"]
    source = (
        sa.func.json_to_recordset(sa.cast(sa.bindparam("rows", type_=sa.Text), postgresql.JSON))
        .table_valued(*(sa.column(c.name, c.type) for c in columns))
        .render_derived(f"{table.name}_rows", with_types=True)
    )
    return sa.insert(table).from_select([c.name for c in columns], sa.select(*source.c))


_HISTORY_FROM_JSON = _insert_from_json(_HISTORY)
_HISTORY_FROM_JSON_WITH_EVENT = _insert_from_json(_HISTORY).add_cte(audit.insert_cte())


def field_values(meta: ObjectMeta, record: Record) -> Record:
    """The record's field values (no system columns)."""
    return {name: record.get(name) for name in meta.fields}

"""The record service: the one write path of every entry point (DESIGN §4).

API, pack install, demo data — and later forms, imports and automations — all
write through ``RecordService``. The pipeline, in order:

    deserialise → defaults / autonumber → validate (compiled JSON Schema) →
    reference and uniqueness checks → SQL write → field history

The service never commits: the caller owns the transaction (one request, one pack
install) and rolls everything back when any step raises.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from trellis.exceptions import (
    BadRequest,
    Conflict,
    DuplicateValue,
    Forbidden,
    NotFound,
    ReferencedRecord,
    StaleRecord,
    ValidationFailed,
)
from trellis.platform.metadata.fieldtypes import INT64_MAX, FieldConversionError
from trellis.platform.metadata.names import SYSTEM_COLUMNS
from trellis.platform.runtime import audit, hierarchy
from trellis.platform.runtime.access import Access
from trellis.platform.runtime.models import AutonumberCounter, RecordHistory, as_utc, utcnow
from trellis.platform.runtime.query import (
    ListQuery,
    encode_cursor,
    keyset_condition,
    order_by,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.metadata.fieldtypes import FieldSpec
    from trellis.platform.runtime.identity import Caller
    from trellis.platform.runtime.registry import MetaRegistry, ObjectMeta

Record = dict[str, Any]
EXPORT_PAGE = 1000
MAX_EXPORT_ROWS = 100_000
_TIMESTAMP_FIELDS = ("created_at", "updated_at")


_HISTORY = cast("sa.Table", RecordHistory.__table__)
_COUNTERS = cast("sa.Table", AutonumberCounter.__table__)
_HISTORY_INSERT = sa.insert(_HISTORY)
_NEXT_NUMBER: dict[str, Any] = {}


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


class RecordService:
    """Reads and writes records as ``caller`` may (``None``: the system, with every right)."""

    def __init__(
        self, session: Session, registry: MetaRegistry, caller: Caller | None = None
    ) -> None:
        self.session = session
        self.registry = registry
        self.caller = caller
        self.access = Access(registry, caller, session)
        self.user_id = caller.user_id if caller else None

    # --- reads ---------------------------------------------------------------------

    def get(self, object_name: str, record_id: int, *, include_children: bool = True) -> Record:
        meta = self.registry.get(object_name)
        self.access.require(meta, "read")
        row = self._active_row(meta, record_id, "read")
        record = serialise(meta, row, hidden=self.access.hidden(meta))
        if include_children:
            for child_name, spec in meta.children:
                child = self.registry.get(child_name)
                if not self.access.allowed(child, "read"):
                    continue  # children the caller may not read are not expanded
                statement = (
                    sa.select(child.table)
                    .where(
                        child.table.c[spec.name] == record_id, child.table.c.deleted_at.is_(None)
                    )
                    .order_by(child.table.c.id)
                )
                visible = self.access.condition(child, "read")
                if visible is not None:
                    statement = statement.where(visible)
                hidden = self.access.hidden(child)
                rows = self.session.execute(statement).mappings()
                record[str(spec.related_name)] = [serialise(child, r, hidden=hidden) for r in rows]
        return record

    def list_page(self, object_name: str, query: ListQuery) -> dict[str, Any]:
        meta = self.registry.get(object_name)
        return self._page(meta, query, "read")

    def export_rows(self, object_name: str, query: ListQuery) -> tuple[list[str], list[Record]]:
        """Every record a list query matches, for an export (the export right is checked)."""
        meta = self.registry.get(object_name)
        self._audit_bypass(meta, "export", None)
        hidden = self.access.hidden(meta)
        names = ["id", *(query.fields or [n for n in meta.fields if n not in hidden])]
        records: list[Record] = []
        query = replace(query, limit=EXPORT_PAGE)
        page = self._page(meta, query, "export")
        records.extend(page["items"])
        while page["next_cursor"]:
            if len(records) >= MAX_EXPORT_ROWS:
                raise BadRequest(
                    f"an export holds at most {MAX_EXPORT_ROWS:,} records; narrow the filter",
                    [{"field": "filter", "message": "too many records match"}],
                )
            page = self._page(meta, query.after_cursor(meta, page["next_cursor"]), "export")
            records.extend(page["items"])
        return names, records

    def _page(self, meta: ObjectMeta, query: ListQuery, operation: str) -> dict[str, Any]:
        self.access.require(meta, operation)
        table = meta.table
        if query.fields is None:
            columns = list(table.columns)
        else:
            wanted = ["id", *query.fields, *(name for name, _ in query.sort)]
            columns = [table.c[name] for name in dict.fromkeys(wanted)]
        statement = sa.select(*columns).where(table.c.deleted_at.is_(None), *query.conditions)
        visible = self.access.condition(meta, operation)
        if visible is not None:
            statement = statement.where(visible)
        if query.after is not None:
            nulls_largest = self.session.get_bind().dialect.name == "postgresql"
            statement = statement.where(
                keyset_condition(meta, query.sort, query.after, nulls_largest)
            )
        statement = statement.order_by(*order_by(meta, query.sort)).limit(query.limit + 1)
        rows = self.session.execute(statement).mappings().all()
        hidden = self.access.hidden(meta)
        items = [serialise(meta, row, query.fields, hidden) for row in rows[: query.limit]]
        next_cursor = None
        if len(rows) > query.limit:
            last = rows[query.limit - 1]
            next_cursor = encode_cursor(
                [_json_value(meta, name, last[name]) for name, _ in query.sort]
            )
        return {"items": items, "next_cursor": next_cursor}

    def history(self, object_name: str, record_id: int) -> list[dict[str, Any]]:
        meta = self.registry.get(object_name)
        self.access.require(meta, "read")
        self._row(meta, record_id, "read")
        hidden = self.access.hidden(meta)
        rows = self.session.scalars(
            sa.select(RecordHistory)
            .where(RecordHistory.object_name == meta.name, RecordHistory.record_id == record_id)
            .order_by(RecordHistory.id)
        )
        return [
            {
                "version": row.version,
                "action": row.action,
                "changes": {
                    k: {"from": v[0], "to": v[1]} for k, v in row.changes.items() if k not in hidden
                },
                "changed_by": row.changed_by,
                "changed_at": _iso(row.changed_at),
            }
            for row in rows
        ]

    # --- writes --------------------------------------------------------------------

    def create(self, object_name: str, payload: Any) -> Record:
        meta = self.registry.get(object_name)
        return self._insert(meta, payload, master=None)

    def _audit_bypass(self, meta: ObjectMeta, operation: str, record_id: int | None) -> None:
        """Admins may do what their roles do not grant; each such write is on the record."""
        if self.access.bypasses(meta, operation):
            assert self.caller is not None
            audit.record(
                self.session,
                "admin.bypass",
                actor_id=self.caller.user_id,
                actor_email=self.caller.email,
                target=f"{meta.name}/{record_id}" if record_id else meta.name,
                detail={"operation": operation},
            )

    def _require_in_scope(self, meta: ObjectMeta, record_id: int, operation: str) -> None:
        """403 when the record (as it now stands, in this transaction) is outside the scope."""
        condition = self.access.condition(meta, operation)
        if condition is None:
            return
        inside = self.session.execute(
            sa.select(meta.table.c.id).where(meta.table.c.id == record_id, condition)
        ).first()
        if inside is None:
            raise Forbidden(
                f"this {meta.name} would be outside what you may {operation}",
                [{"field": meta.name, "message": f"outside your {operation} scope"}],
            )

    def update(self, object_name: str, record_id: int, payload: Any) -> Record:
        meta = self.registry.get(object_name)
        payload = _require_object(payload)
        expected = payload.pop("version", None)
        if isinstance(expected, bool) or not isinstance(expected, int):
            raise ValidationFailed(
                "the record's current version is required to update it",
                [{"field": "version", "message": "is required (a whole number)"}],
            )
        _refuse_platform_keys(meta, payload, allow_children=False)
        self.access.require(meta, "update")
        row = self._active_row(meta, record_id, "read")
        self._require_in_scope(meta, record_id, "update")
        self.access.require_writable(meta, list(payload))
        self._audit_bypass(meta, "update", record_id)
        if row["version"] != expected:
            raise _stale(meta, record_id, row["version"], expected)
        current = serialise(meta, row)
        hidden = self.access.hidden(meta)
        merged = {
            name: value
            for name, value in {**_field_values(meta, current), **payload}.items()
            if value is not None
        }
        meta.validate(merged)
        values = _to_python(meta, payload)
        self._check_references(meta, values)
        self._check_unique(meta, values, exclude_id=record_id)
        changes = {
            name: [current.get(name), meta.fields[name].to_json(value)]
            for name, value in values.items()
            if meta.fields[name].to_json(value) != current.get(name)
        }
        if not changes:
            return _mask(current, hidden)
        now = utcnow()
        table = meta.table
        result = self.session.execute(
            sa.update(table)
            .where(
                table.c.id == record_id, table.c.version == expected, table.c.deleted_at.is_(None)
            )
            .values(
                {
                    **{name: values[name] for name in changes},
                    "version": table.c.version + 1,
                    "updated_at": now,
                    "updated_by": self.user_id,
                }
            )
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise _stale(meta, record_id, None, expected)
        self._history(meta, record_id, "update", expected + 1, changes, now)
        parent_field = meta.definition.hierarchy_field
        if parent_field is not None and parent_field in changes:
            hierarchy.move(self.session, meta.name, record_id, values[parent_field])
            self.access.forget_trees()
        self._require_in_scope(meta, record_id, "update")
        current.update({name: change[1] for name, change in changes.items()})
        current.update(version=expected + 1, updated_at=_iso(now), updated_by=self.user_id)
        return _mask(current, hidden)

    def delete(self, object_name: str, record_id: int) -> None:
        meta = self.registry.get(object_name)
        self.access.require(meta, "delete")
        row = self._active_row(meta, record_id, "read")
        self._require_in_scope(meta, record_id, "delete")
        self._audit_bypass(meta, "delete", record_id)
        self._soft_delete(meta, record_id, row["version"], utcnow())

    def restore(self, object_name: str, record_id: int) -> Record:
        meta = self.registry.get(object_name)
        self.access.require(meta, "delete")
        row = self._row(meta, record_id, "read")
        self._require_in_scope(meta, record_id, "delete")
        self._audit_bypass(meta, "delete", record_id)
        if row["deleted_at"] is None:
            raise Conflict(f"{meta.name} {record_id} is not deleted")
        self._restore(meta, row)
        return self.get(object_name, record_id)

    # --- the pipeline --------------------------------------------------------------

    def _insert(self, meta: ObjectMeta, payload: Any, master: tuple[str, int] | None) -> Record:
        payload = _require_object(payload)
        children = _pop_children(meta, payload)
        _refuse_platform_keys(meta, payload, allow_children=True)
        self.access.require(meta, "create")
        self.access.require_writable(meta, list(payload))
        if master is not None:
            payload[master[0]] = master[1]
        for name, spec in meta.fields.items():
            if name not in payload and spec.has_default:
                payload[name] = spec.default
        meta.validate({k: v for k, v in payload.items() if v is not None})
        values = _to_python(meta, payload)
        self._check_references(meta, values, skip=master[0] if master else None)
        self._check_unique(meta, values, exclude_id=None)
        now = utcnow()
        for name, spec in meta.fields.items():
            if spec.type.name == "autonumber":
                values[name] = self._next_number(meta, spec, now)
        system = {
            "version": 1,
            "created_at": now,
            "updated_at": now,
            "created_by": self.user_id,
            "updated_by": self.user_id,
            "owner_id": self.user_id,
        }
        record_id = self.session.execute(
            sa.insert(meta.table).values({**values, **system}).returning(meta.table.c.id)
        ).scalar_one()
        parent_field = meta.definition.hierarchy_field
        if parent_field is not None:
            hierarchy.link_new(self.session, meta.name, record_id, values.get(parent_field))
            self.access.forget_trees()
        self._require_in_scope(meta, record_id, "create")
        self._audit_bypass(meta, "create", record_id)
        record: Record = {"id": record_id, "version": 1, **_system_json(system)}
        record.update({name: spec.to_json(values.get(name)) for name, spec in meta.fields.items()})
        self._history(
            meta,
            record_id,
            "create",
            1,
            {k: [None, v] for k, v in record.items() if k in meta.fields and v is not None},
            now,
        )
        problems: list[dict[str, Any]] = []
        for (child_name, spec), items in children:
            child = self.registry.get(child_name)
            created = []
            for index, item in enumerate(items):
                try:
                    created.append(self._insert(child, item, master=(spec.name, record_id)))
                except (ValidationFailed, DuplicateValue) as exc:
                    # Keep going so the caller hears about every bad line at once;
                    # the transaction is rolled back when we raise below.
                    prefix = f"{spec.related_name}[{index}]"
                    problems.extend(
                        {**d, "field": f"{prefix}.{d['field']}" if d["field"] else prefix}
                        for d in exc.details
                    )
            record[str(spec.related_name)] = created
        if problems:
            raise ValidationFailed("some detail records are not valid", problems)
        return _mask(record, self.access.hidden(meta))

    def _check_references(
        self, meta: ObjectMeta, values: dict[str, Any], skip: str | None = None
    ) -> None:
        details = []
        for name, value in values.items():
            spec = meta.fields[name]
            if spec.target is None or value is None or name == skip:
                continue
            target_meta = self.registry.get(spec.target)
            statement = target_meta.live_id_statement
            # A record the caller may not read does not exist for them.
            visible = self.access.condition(target_meta, "read")
            if visible is not None or not self.access.allowed(target_meta, "read"):
                statement = statement.where(visible if visible is not None else sa.false())
            if self.session.execute(statement, {"id": value}).first() is None:
                details.append({"field": name, "message": f"no {spec.target} with id {value}"})
        if details:
            raise ValidationFailed("the record refers to records that do not exist", details)

    def _check_unique(
        self, meta: ObjectMeta, values: dict[str, Any], exclude_id: int | None
    ) -> None:
        table = meta.table
        for name, value in values.items():
            spec = meta.fields[name]
            if not spec.unique or value is None or spec.type.name == "autonumber":
                continue
            statement = sa.select(table.c.id).where(
                table.c[name] == value, table.c.deleted_at.is_(None)
            )
            if exclude_id is not None:
                statement = statement.where(table.c.id != exclude_id)
            if self.session.execute(statement.limit(1)).first() is not None:
                raise DuplicateValue(
                    f"another {meta.name} already has this {name}",
                    [{"field": name, "message": f"{spec.to_json(value)!r} is already taken"}],
                )

    def _next_number(self, meta: ObjectMeta, spec: FieldSpec, now: dt.datetime) -> str:
        """The next number of an autonumber field: one atomic upsert, safe under concurrency."""
        template = str(spec.schema["x-format"])
        parts = {
            "{YYYY}": f"{now:%Y}",
            "{YY}": f"{now:%y}",
            "{MM}": f"{now:%m}",
            "{DD}": f"{now:%d}",
        }
        period = "".join(v for k, v in parts.items() if k in template) or "all"
        statement = _next_number_statement(self.session.get_bind().dialect.name)
        number = int(
            self.session.execute(
                statement, {"object_name": meta.name, "field_name": spec.name, "period": period}
            ).scalar_one()
        )
        text = template
        for key, value in parts.items():
            text = text.replace(key, value)
        start = text.index("{0")
        end = text.index("}", start)
        width = end - start - 1
        return f"{text[:start]}{number:0{width}d}{text[end + 1 :]}"

    def _history(
        self,
        meta: ObjectMeta,
        record_id: int,
        action: str,
        version: int,
        changes: dict[str, Any],
        at: dt.datetime,
    ) -> None:
        self.session.execute(
            _HISTORY_INSERT,
            {
                "object_name": meta.name,
                "record_id": record_id,
                "action": action,
                "version": version,
                "changes": changes,
                "changed_by": self.user_id,
                "changed_at": at,
            },
        )

    def _soft_delete(
        self, meta: ObjectMeta, record_id: int, version: int, now: dt.datetime
    ) -> None:
        self._release_referrers(meta, record_id, now)
        for child_name, spec in meta.children:
            child = self.registry.get(child_name)
            rows = self.session.execute(
                sa.select(child.table.c.id, child.table.c.version).where(
                    child.table.c[spec.name] == record_id, child.table.c.deleted_at.is_(None)
                )
            ).all()
            for child_id, child_version in rows:
                self._soft_delete(child, child_id, child_version, now)
        table = meta.table
        self.session.execute(
            sa.update(table)
            .where(table.c.id == record_id)
            .values(
                deleted_at=now, version=table.c.version + 1, updated_at=now, updated_by=self.user_id
            )
        )
        self._history(meta, record_id, "delete", version + 1, {}, now)

    def _release_referrers(self, meta: ObjectMeta, record_id: int, now: dt.datetime) -> None:
        """Refuse when live records point here (restrict), or clear their pointers (set_null)."""
        blocking = []
        for referrer_name, spec in meta.referrers:
            referrer = self.registry.get(referrer_name)
            column = referrer.table.c[spec.name]
            live = referrer.table.c.deleted_at.is_(None)
            condition = sa.and_(column == record_id, live)
            if referrer_name == meta.name:
                condition = sa.and_(condition, referrer.table.c.id != record_id)
            rows = self.session.execute(
                sa.select(referrer.table.c.id, referrer.table.c.version).where(condition)
            ).all()
            if not rows:
                continue
            if spec.on_delete != "set_null":
                blocking.append(
                    {
                        "field": f"{referrer_name}.{spec.name}",
                        "message": f"{len(rows)} {referrer_name} record(s) refer to it",
                    }
                )
                continue
            for ref_id, ref_version in rows:
                self.session.execute(
                    sa.update(referrer.table)
                    .where(referrer.table.c.id == ref_id)
                    .values(
                        {
                            spec.name: None,
                            "version": referrer.table.c.version + 1,
                            "updated_at": now,
                            "updated_by": self.user_id,
                        }
                    )
                )
                self._history(
                    referrer, ref_id, "update", ref_version + 1, {spec.name: [record_id, None]}, now
                )
        if blocking:
            raise ReferencedRecord(
                f"{meta.name} {record_id} is still referred to and cannot be deleted", blocking
            )

    def _restore(self, meta: ObjectMeta, row: Any) -> None:
        record_id, deleted_at = row["id"], row["deleted_at"]
        details = []
        for name, spec in meta.fields.items():
            value = row[name]
            if spec.target is None or value is None:
                continue
            target = self.registry.get(spec.target).table
            alive = self.session.execute(
                sa.select(target.c.id).where(target.c.id == value, target.c.deleted_at.is_(None))
            ).first()
            if alive is None:
                details.append({"field": name, "message": f"{spec.target} {value} is deleted"})
        if details:
            raise Conflict(f"{meta.name} {record_id} refers to deleted records", details)
        self._check_unique(
            meta, {n: row[n] for n, s in meta.fields.items() if s.unique}, exclude_id=record_id
        )
        table = meta.table
        now = utcnow()
        self.session.execute(
            sa.update(table)
            .where(table.c.id == record_id)
            .values(
                deleted_at=None,
                version=table.c.version + 1,
                updated_at=now,
                updated_by=self.user_id,
            )
        )
        self._history(meta, record_id, "restore", row["version"] + 1, {}, now)
        for child_name, spec in meta.children:
            child = self.registry.get(child_name)
            rows = (
                self.session.execute(
                    sa.select(child.table).where(
                        child.table.c[spec.name] == record_id,
                        child.table.c.deleted_at == deleted_at,
                    )
                )
                .mappings()
                .all()
            )
            for child_row in rows:
                self._restore(child, child_row)

    def _row(self, meta: ObjectMeta, record_id: int, operation: str | None = None) -> Any:
        """The stored row; a record outside the caller's ``operation`` scope is not found."""
        if not 1 <= record_id <= INT64_MAX:  # no such id; and the driver could not bind it
            raise NotFound(f"no {meta.name} with id {record_id}")
        statement = meta.row_statement
        if operation is not None:
            visible = self.access.condition(meta, operation)
            if visible is not None:
                statement = statement.where(visible)
        row = self.session.execute(statement, {"id": record_id}).mappings().first()
        if row is None:
            raise NotFound(f"no {meta.name} with id {record_id}")
        return row

    def _active_row(self, meta: ObjectMeta, record_id: int, operation: str | None = None) -> Any:
        row = self._row(meta, record_id, operation)
        if row["deleted_at"] is not None:
            raise NotFound(f"no {meta.name} with id {record_id}")
        return row


def _mask(record: Record, hidden: frozenset[str]) -> Record:
    return {k: v for k, v in record.items() if k not in hidden} if hidden else record


def serialise(
    meta: ObjectMeta,
    row: Any,
    fields: list[str] | None = None,
    hidden: frozenset[str] = frozenset(),
) -> Record:
    """A stored row as API JSON: system fields, then the fields in definition order.

    ``hidden`` fields are left out entirely (not nulled), so their existence is not shown.
    """
    record: Record = {"id": row["id"]}
    if fields is None:
        record["version"] = row["version"]
        record.update(_system_json(row))
        names: list[str] | Any = meta.fields.keys()
    else:
        names = fields
    for name in names:
        if name == "id" or name in hidden:
            continue
        spec = meta.fields.get(name)
        if spec is None:
            value = row[name]
            record[name] = _iso(value) if name in _TIMESTAMP_FIELDS else value
        else:
            record[name] = spec.to_json(row[name])
    return record


def _json_value(meta: ObjectMeta, name: str, value: Any) -> Any:
    spec = meta.fields.get(name)
    if spec is not None:
        return spec.to_json(value)
    return _iso(value) if name in _TIMESTAMP_FIELDS else value


def _system_json(values: Any) -> Record:
    return {
        "created_at": _iso(values["created_at"]),
        "created_by": values["created_by"],
        "updated_at": _iso(values["updated_at"]),
        "updated_by": values["updated_by"],
        "owner_id": values["owner_id"],
    }


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return as_utc(value).astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _field_values(meta: ObjectMeta, record: Record) -> Record:
    return {name: record.get(name) for name in meta.fields}


def _require_object(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ValidationFailed(
            "a record must be a JSON object", [{"field": "", "message": "not an object"}]
        )
    return dict(payload)


def _pop_children(
    meta: ObjectMeta, payload: dict[str, Any]
) -> list[tuple[tuple[str, FieldSpec], list[Any]]]:
    children = []
    for child_name, spec in meta.children:
        related = str(spec.related_name)
        if related not in payload:
            continue
        items = payload.pop(related)
        if not isinstance(items, list):
            raise ValidationFailed(
                f"{related} must be a list of {child_name} records",
                [{"field": related, "message": "must be a list"}],
            )
        children.append(((child_name, spec), items))
    return children


def _refuse_platform_keys(meta: ObjectMeta, payload: dict[str, Any], allow_children: bool) -> None:
    details = []
    related = {str(spec.related_name) for _, spec in meta.children}
    for key in payload:
        if key in SYSTEM_COLUMNS:
            details.append({"field": key, "message": "is set by the platform"})
        elif key in related and not allow_children:
            details.append(
                {"field": key, "message": "children are changed through their own records"}
            )
        elif key in meta.fields and not meta.fields[key].writable:
            details.append({"field": key, "message": "is read-only"})
    if details:
        raise ValidationFailed("the record sets fields it may not set", details)


def _to_python(meta: ObjectMeta, payload: dict[str, Any]) -> dict[str, Any]:
    values, details = {}, []
    for name, value in payload.items():
        try:
            values[name] = meta.fields[name].to_python(value)
        except FieldConversionError as exc:
            details.append({"field": name, "message": str(exc)})
    if details:
        raise ValidationFailed("the record is not valid", details)
    return values


def _stale(meta: ObjectMeta, record_id: int, current: int | None, expected: int) -> StaleRecord:
    message = f"{meta.name} {record_id} was changed by someone else (you had version {expected})"
    details = [{"field": "version", "message": f"current version is {current}"}] if current else []
    return StaleRecord(message, details)


__all__ = ["RecordService", "serialise"]

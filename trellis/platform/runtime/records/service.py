"""The record service: the public verbs of the one write path (DESIGN §4).

API, bulk, pack install, demo data — and later forms, imports and automations — all
read and write records through ``RecordService``; the steps of a write live in
``pipeline``, the moments other capabilities plug into in ``hooks``.

The service never commits: the caller owns the transaction (one request, one pack
install) and rolls everything back when any step raises. Every state change is
conditional on the state it was decided from (``UPDATE … WHERE version = :v``, ``…
WHERE deleted_at IS NULL``), so concurrent callers cannot both win.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Collection, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from trellis import defaults
from trellis.exceptions import (
    BadRequest,
    Conflict,
    DuplicateValue,
    FileTooLarge,
    Forbidden,
    NotFound,
    ReferencedRecord,
    StaleRecord,
    TrellisError,
    ValidationFailed,
)
from trellis.platform.messages import N_
from trellis.platform.metadata.fieldtypes import INT64_MAX, FileType
from trellis.platform.metadata.permissions import Operation
from trellis.platform.runtime import audit, computed, files, hierarchy
from trellis.platform.runtime.access import Access
from trellis.platform.runtime.models import (
    HierarchyLink,
    RecordHistory,
    StoredFile,
    iso,
    utcnow,
)
from trellis.platform.runtime.query import ListQuery, encode_cursor, keyset_condition, order_by
from trellis.platform.runtime.records import lookup, pipeline
from trellis.platform.runtime.records.hooks import Action, HookRegistry, hooks
from trellis.platform.runtime.records.pipeline import Draft, WriteUnit
from trellis.platform.runtime.records.serialise import Record, json_value, mask, serialise

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.metadata.fieldtypes import FieldSpec
    from trellis.platform.runtime.files import FileStore
    from trellis.platform.runtime.identity import Caller
    from trellis.platform.runtime.registry import MetaRegistry, ObjectMeta


class RecordService:
    """Reads and writes records as ``caller`` may (``None``: the system, with every right)."""

    def __init__(
        self,
        session: Session,
        registry: MetaRegistry,
        caller: Caller | None = None,
        hook_registry: HookRegistry | None = None,
    ) -> None:
        self.session = session
        self.registry = registry
        self.caller = caller
        self.access = Access(registry, caller, session)
        self.user_id = caller.user_id if caller else None
        self.unit = WriteUnit(session, registry, self.access, caller, hook_registry or hooks)

    # --- reads ---------------------------------------------------------------------

    def get(self, object_name: str, record_id: int, *, include_children: bool = True) -> Record:
        """One live record the caller may read, with its master-detail lines."""
        meta = self.registry.get(object_name)
        self.access.require(meta, Operation.READ)
        row = self._active_row(meta, record_id, Operation.READ)
        record = serialise(meta, row, hidden=self.access.hidden(meta))
        if include_children:
            for child_name, spec in meta.children:
                child = self.registry.get(child_name)
                if not self.access.allowed(child, Operation.READ):
                    continue  # children the caller may not read are not expanded
                statement = (
                    sa.select(child.table)
                    .where(
                        child.table.c[spec.name] == record_id, child.table.c.deleted_at.is_(None)
                    )
                    .order_by(child.table.c.id)
                )
                visible = self.access.condition(child, Operation.READ)
                if visible is not None:
                    statement = statement.where(visible)
                hidden = self.access.hidden(child)
                rows = self.session.execute(statement).mappings()
                record[str(spec.related_name)] = [serialise(child, r, hidden=hidden) for r in rows]
        return record

    def deleted(self, object_name: str, record_id: int) -> Record:
        """A soft-deleted record the caller may read and delete (to restore it)."""
        meta = self.registry.get(object_name)
        self.access.require(meta, Operation.READ)
        row = self._row(meta, record_id, Operation.READ)
        if row["deleted_at"] is None:
            raise NotFound(N_("%(object)s %(id)s is not deleted", object=meta.name, id=record_id))
        record = serialise(meta, row, hidden=self.access.hidden(meta))
        record["deleted_at"] = iso(row["deleted_at"])
        return record

    def titles(self, object_name: str, ids: set[int]) -> dict[int, str]:
        """``{id: title}`` of the readable live records among ``ids``."""
        return lookup.titles(self.access, self.registry.get(object_name), ids)

    def search(self, object_name: str, text: str, limit: int = 10) -> list[tuple[int, str]]:
        """Readable records whose title or searchable fields contain ``text``."""
        return lookup.search(self.access, self.registry.get(object_name), text, limit)

    def list_page(
        self, object_name: str, query: ListQuery, *, titles: Iterable[str] = ()
    ) -> dict[str, Any]:
        """One page of the records a checked list query matches.

        With ``titles`` (lookup field names), the page also holds ``titles``: for those
        fields whose titles it could read in the same statement (``lookup.title_columns``),
        ``{field: {id: title}}`` of the ids on the page, as ``titles()`` answers them; an
        id left out has no title the caller may see. Ask ``titles()`` for the other fields.
        """
        meta = self.registry.get(object_name)
        return self._page(meta, query, Operation.READ, titles)

    def export_rows(self, object_name: str, query: ListQuery) -> tuple[list[str], list[Record]]:
        """Every record a list query matches, for an export (the export right is checked)."""
        meta = self.registry.get(object_name)
        pipeline.audit_bypass(self.unit, meta, Operation.EXPORT, None)
        hidden = self.access.hidden(meta)
        names = ["id", *(query.fields or [n for n in meta.fields if n not in hidden])]
        records: list[Record] = []
        query = replace(query, limit=defaults.EXPORT_PAGE)
        page = self._page(meta, query, Operation.EXPORT)
        records.extend(page["items"])
        while page["next_cursor"]:
            if len(records) >= defaults.MAX_EXPORT_ROWS:
                limit = format(defaults.MAX_EXPORT_ROWS, ",")
                raise BadRequest(
                    N_("an export holds at most %(limit)s records; narrow the filter", limit=limit),
                    [{"field": "filter", "message": N_("too many records match")}],
                )
            page = self._page(meta, query.after_cursor(meta, page["next_cursor"]), Operation.EXPORT)
            records.extend(page["items"])
        return names, records

    def _page(
        self,
        meta: ObjectMeta,
        query: ListQuery,
        operation: Operation,
        titles: Iterable[str] = (),
    ) -> dict[str, Any]:
        self.access.require(meta, operation)
        table = meta.table
        columns: list[sa.ColumnElement[Any]]
        if query.fields is None:
            columns = list(table.columns)
        else:
            wanted = ["id", *query.fields, *(name for name, _ in query.sort)]
            columns = [table.c[name] for name in dict.fromkeys(wanted)]
        # The lookups' titles ride along as sub-selects, labelled "_title_<field>" (a field
        # name never starts with "_", so no label meets a column).
        title_columns = lookup.title_columns(self.access, meta, titles) if titles else {}
        columns += [column.label(f"_title_{name}") for name, column in title_columns.items()]
        live = table.c.deleted_at.is_not(None) if query.deleted else table.c.deleted_at.is_(None)
        statement = sa.select(*columns).where(live, *query.conditions)
        visible = self.access.condition(meta, operation)
        if visible is not None:
            statement = statement.where(visible)
        if query.after is not None:
            nulls_largest = self.unit.dialect == "postgresql"
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
                [json_value(meta, name, last[name]) for name, _ in query.sort]
            )
        page: dict[str, Any] = {"items": items, "next_cursor": next_cursor}
        if titles:
            page["titles"] = {
                name: {
                    row[name]: lookup.title_text(row[name], row[f"_title_{name}"])
                    for row in rows[: query.limit]
                    if row[name] is not None and row[f"_title_{name}"] is not None
                }
                for name in title_columns
            }
        return page

    def history(self, object_name: str, record_id: int) -> list[dict[str, Any]]:
        """Every write of a record the caller may read: who, when, old → new."""
        meta = self.registry.get(object_name)
        self.access.require(meta, Operation.READ)
        self._row(meta, record_id, Operation.READ)
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
                "changed_at": iso(row.changed_at),
                **({"detail": row.detail} if row.detail else {}),
            }
            for row in rows
        ]

    # --- create ----------------------------------------------------------------------

    def create(self, object_name: str, payload: Any) -> Record:
        """Create one record (and its master-detail lines) through the pipeline."""
        computed.discard(self.unit)
        meta = self.registry.get(object_name)
        draft = Draft(meta, payload)
        pipeline.check_new(self.unit, meta, [draft])
        if draft.error is not None:
            raise draft.error
        pipeline.write_new(self.unit, meta, [draft], utcnow())
        computed.finish(self.unit)
        self._reread_rollups(meta, [draft])
        return self._result(draft)

    def create_many(
        self,
        object_name: str,
        payloads: Any,
        *,
        skip_invalid: bool = False,
        with_items: bool = True,
    ) -> dict[str, Any]:
        """Create up to ``BULK_MAX_RECORDS`` records in the caller's transaction.

        All or nothing by default: one bad record refuses the batch, naming every bad
        record by its index. With ``skip_invalid`` the valid ones are written and the
        others reported. ``with_items=False`` leaves ``items`` empty, for a caller that
        only counts what was written (an import), so the records are not serialised
        for nothing.
        """
        computed.discard(self.unit)
        meta = self.registry.get(object_name)
        if not isinstance(payloads, list) or not payloads:
            raise BadRequest(
                N_('send a non-empty JSON array of records (or {"records": [...]})'),
                [{"field": "records", "message": N_("must be a non-empty list")}],
            )
        if len(payloads) > defaults.BULK_MAX_RECORDS:
            raise BadRequest(
                N_("at most %(limit)s records per request", limit=defaults.BULK_MAX_RECORDS),
                [{"field": "records", "message": N_("%(count)s sent", count=len(payloads))}],
            )
        drafts = [Draft(meta, payload, index=i) for i, payload in enumerate(payloads)]
        pipeline.check_new(self.unit, meta, drafts)
        bad = [d for d in drafts if d.error is not None]
        if bad and not skip_invalid:
            raise _batch_refusal(bad, len(drafts))
        written = pipeline.good(drafts)
        pipeline.write_new(self.unit, meta, written, utcnow())
        computed.finish(self.unit)
        if not with_items:
            return {"created": len(written), "items": [], "errors": [_batch_error(d) for d in bad]}
        self._reread_rollups(meta, written)
        return {
            "created": len(written),
            "items": [self._result(d) for d in written],
            "errors": [_batch_error(d) for d in bad],
        }

    def _reread_rollups(self, meta: ObjectMeta, drafts: list[Draft]) -> None:
        """New records' roll-ups as their lines left them (they moved after the INSERT)."""
        rolled = [r.field for r in computed.plan_of(self.registry, meta).own_rollups]
        if not rolled or not drafts:
            return
        table = meta.table
        ids = [d.record_id for d in drafts]
        found = {
            row.id: row
            for row in self.session.execute(
                sa.select(table.c.id, *(table.c[n] for n in rolled)).where(table.c.id.in_(ids))
            )
        }
        for draft in drafts:
            row = found.get(draft.record_id)
            if row is not None and draft.record is not None:
                for name in rolled:
                    value = row._mapping[name]
                    draft.record[name] = None if value is None else meta.fields[name].to_json(value)

    def _result(self, draft: Draft) -> Record:
        """The written record as the caller may see it, lines included."""
        assert draft.record is not None
        record = mask(draft.record, self.access.hidden(draft.meta))
        for spec, lines in draft.child_drafts:
            record[str(spec.related_name)] = [self._result(line) for line in lines]
        return record

    # --- update ----------------------------------------------------------------------

    def update(
        self,
        object_name: str,
        record_id: int,
        payload: Any,
        *,
        workflow_fields: Collection[str] = (),
        history: tuple[str, dict[str, Any]] | None = None,
    ) -> Record:
        """Change the fields a payload names, from the version it says it read.

        A workflow's transition (``runtime/workflow``) names the fields it sets itself in
        ``workflow_fields`` — the status, its actions' fields — which the caller's field
        access does not restrict (the transition's own rules decided), and its history
        row as ``(action, detail)``.
        """
        computed.discard(self.unit)
        meta = self.registry.get(object_name)
        payload = _require_object(payload)
        expected = payload.pop("version", None)
        if isinstance(expected, bool) or not isinstance(expected, int):
            raise ValidationFailed(
                N_("the record's current version is required to update it"),
                [{"field": "version", "message": N_("is required (a whole number)")}],
            )
        pipeline.refuse_platform_keys(meta, payload, allow_children=False)
        pipeline.exact_amounts(meta, payload)
        self.access.require(meta, Operation.UPDATE)
        row = self._active_row(meta, record_id, Operation.READ)
        pipeline.require_in_scope(self.unit, meta, [record_id], Operation.UPDATE)
        self.access.require_writable(meta, [k for k in payload if k not in workflow_fields])
        pipeline.audit_bypass(self.unit, meta, Operation.UPDATE, record_id)
        if row["version"] != expected:
            raise _stale(meta, record_id, row["version"], expected)
        current = serialise(meta, row)
        draft = Draft(
            meta, payload, action=Action.UPDATE, payload=payload, record_id=record_id, old=current
        )
        for step in (pipeline.compute, pipeline.validate):
            step(draft, self.unit)
        pipeline.to_python(draft)
        pipeline.check_references(self.unit, meta, [draft])
        pipeline.check_unique(self.unit, meta, [draft], exclude_id=record_id)
        if draft.error is not None:
            raise draft.error
        values = draft.values
        changes = {
            name: [current.get(name), meta.fields[name].to_json(value)]
            for name, value in values.items()
            if meta.fields[name].to_json(value) != current.get(name)
        }
        hidden = self.access.hidden(meta)
        if not changes:
            return mask(current, hidden)
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
        pipeline.write_history(
            self.unit,
            [
                pipeline.history_row(
                    self.unit,
                    meta,
                    record_id,
                    history[0] if history else Action.UPDATE,
                    expected + 1,
                    changes,
                    now,
                    detail=history[1] if history else None,
                )
            ],
        )
        parent_field = meta.definition.hierarchy_field
        if parent_field is not None and parent_field in changes:
            hierarchy.move(self.session, meta.name, record_id, values[parent_field])
            self.access.forget_trees()
        pipeline.require_in_scope(self.unit, meta, [record_id], Operation.UPDATE)
        current.update({name: change[1] for name, change in changes.items()})
        current.update(version=expected + 1, updated_at=iso(now), updated_by=self.user_id)
        draft.record = current
        if not computed.plan_of(self.registry, meta).empty:
            stored = dict(row)
            computed.after_write(
                self.unit, meta, record_id, stored, {**stored, **{n: values[n] for n in changes}}
            )
            computed.finish(self.unit)
        pipeline.after_write(self.unit, draft, changes)
        return mask(current, hidden)

    # --- delete and restore ---------------------------------------------------------

    def delete(self, object_name: str, record_id: int, expected_version: int | None = None) -> None:
        """Soft-delete a live record and its lines, once: concurrent deletes lose with 404.

        With ``expected_version`` (the version the caller read), a record changed since
        is refused as stale (409).
        """
        meta = self.registry.get(object_name)
        self.access.require(meta, Operation.DELETE)
        row = self._active_row(meta, record_id, Operation.READ)
        pipeline.require_in_scope(self.unit, meta, [record_id], Operation.DELETE)
        from trellis.platform.runtime.workflow.pending import refuse_pending_delete

        refuse_pending_delete(self.session, self.registry, meta, record_id, row)
        pipeline.audit_bypass(self.unit, meta, Operation.DELETE, record_id)
        if expected_version is not None and row["version"] != expected_version:
            raise _stale(meta, record_id, row["version"], expected_version)
        now = utcnow()
        version = self._stamp_deleted(meta, record_id, expected_version, now)
        history = [
            pipeline.history_row(self.unit, meta, record_id, Action.DELETE, version, {}, now)
        ]
        self._release_referrers(meta, [record_id], now)
        history.extend(self._delete_children(meta, [record_id], now))
        pipeline.write_history(self.unit, history)
        draft = Draft(
            meta, None, action=Action.DELETE, record_id=record_id, old=serialise(meta, row)
        )
        draft.record = {**draft.old, "version": version} if draft.old else None
        computed.after_write(self.unit, meta, record_id, dict(row), None)
        computed.finish(self.unit)
        pipeline.after_write(self.unit, draft, {})

    def _stamp_deleted(
        self, meta: ObjectMeta, record_id: int, expected: int | None, now: dt.datetime
    ) -> int:
        """``UPDATE … SET deleted_at WHERE deleted_at IS NULL``: exactly one caller wins."""
        table = meta.table
        condition = sa.and_(table.c.id == record_id, table.c.deleted_at.is_(None))
        if expected is not None:
            condition = sa.and_(condition, table.c.version == expected)
        version = self.session.execute(
            sa.update(table)
            .where(condition)
            .values(
                deleted_at=now, version=table.c.version + 1, updated_at=now, updated_by=self.user_id
            )
            .returning(table.c.version)
        ).scalar()
        if version is None:
            now_row = self._row(meta, record_id)
            if now_row["deleted_at"] is not None:
                raise NotFound(N_("no %(object)s with id %(id)s", object=meta.name, id=record_id))
            raise _stale(meta, record_id, now_row["version"], expected or now_row["version"] - 1)
        return int(version)

    def _delete_children(
        self, meta: ObjectMeta, parent_ids: list[int], now: dt.datetime
    ) -> list[dict[str, Any]]:
        """Stamp the live lines of deleted parents with the parents' moment, in one UPDATE each."""
        history: list[dict[str, Any]] = []
        for child_name, spec in meta.children:
            child = self.registry.get(child_name)
            table = child.table
            rows = self.session.execute(
                sa.update(table)
                .where(table.c[spec.name].in_(parent_ids), table.c.deleted_at.is_(None))
                .values(
                    deleted_at=now,
                    version=table.c.version + 1,
                    updated_at=now,
                    updated_by=self.user_id,
                )
                .returning(table.c.id, table.c.version)
            ).all()
            ids = [row.id for row in rows]
            history.extend(
                pipeline.history_row(self.unit, child, row.id, Action.DELETE, row.version, {}, now)
                for row in rows
            )
            if ids:
                self._release_referrers(child, ids, now)
                history.extend(self._delete_children(child, ids, now))
        return history

    def _referring(
        self, table: sa.Table, condition: Any, referrer_name: str, field: str
    ) -> list[dict[str, Any]]:
        """The refusal detail for the ``referrer_name`` records ``condition`` finds (none
        when there are none): ``{field: referrer.field, message: N record(s) refer to it}``."""
        count = self.session.execute(
            sa.select(sa.func.count()).select_from(table).where(condition)
        ).scalar_one()
        if not count:
            return []
        message = N_(
            "%(count)s %(object)s record(s) refer to it", count=count, object=referrer_name
        )
        return [{"field": f"{referrer_name}.{field}", "message": message}]

    def _release_referrers(self, meta: ObjectMeta, record_ids: list[int], now: dt.datetime) -> None:
        """Refuse when live records point here (restrict), or clear their pointers (set_null).

        Runs after the record is stamped deleted: its row is locked by then, so a record
        created concurrently with a reference to it has either committed (and is seen
        here) or will find the target deleted.
        """
        blocking = []
        history: list[dict[str, Any]] = []
        for referrer_name, spec in meta.referrers:
            referrer = self.registry.get(referrer_name)
            table = referrer.table
            condition = sa.and_(table.c[spec.name].in_(record_ids), table.c.deleted_at.is_(None))
            if spec.on_delete != "set_null":
                blocking.extend(self._referring(table, condition, referrer_name, spec.name))
                continue
            rows = self.session.execute(
                sa.select(table.c.id, table.c[spec.name]).where(condition)
            ).all()
            if not rows:
                continue
            cleared = self.session.execute(
                sa.update(table)
                .where(table.c.id.in_([r[0] for r in rows]))
                .values(
                    {
                        spec.name: None,
                        "version": table.c.version + 1,
                        "updated_at": now,
                        "updated_by": self.user_id,
                    }
                )
                .returning(table.c.id, table.c.version)
            ).all()
            pointed = dict(rows)
            history.extend(
                pipeline.history_row(
                    self.unit,
                    referrer,
                    ref_id,
                    Action.UPDATE,
                    version,
                    {spec.name: [pointed[ref_id], None]},
                    now,
                )
                for ref_id, version in cleared
            )
        if blocking:
            names = ", ".join(str(i) for i in record_ids[:10])
            raise ReferencedRecord(
                N_(
                    "%(object)s %(ids)s is still referred to and cannot be deleted",
                    object=meta.name,
                    ids=names,
                ),
                blocking,
            )
        pipeline.write_history(self.unit, history)

    def restore(self, object_name: str, record_id: int) -> Record:
        """Bring a soft-deleted record back with the lines deleted with it, once."""
        meta = self.registry.get(object_name)
        self.access.require(meta, Operation.DELETE)
        row = self._row(meta, record_id, Operation.READ)
        pipeline.require_in_scope(self.unit, meta, [record_id], Operation.DELETE)
        pipeline.audit_bypass(self.unit, meta, Operation.DELETE, record_id)
        if row["deleted_at"] is None:
            raise Conflict(N_("%(object)s %(id)s is not deleted", object=meta.name, id=record_id))
        self._restore(meta, row)
        computed.after_write(self.unit, meta, record_id, None, {**dict(row), "deleted_at": None})
        computed.finish(self.unit)
        return self.get(object_name, record_id)

    def _restore(self, meta: ObjectMeta, row: Any) -> None:
        record_id, deleted_at = row["id"], row["deleted_at"]
        details = []
        for name, spec in meta.fields.items():
            value = row[name]
            if spec.target is None or value is None:
                continue
            # Locked like any reference check: the target cannot be deleted under us.
            if value not in pipeline.live_ids(self.unit, spec.target, {value}, as_caller=False):
                details.append(
                    {
                        "field": name,
                        "message": N_("%(object)s %(id)s is deleted", object=spec.target, id=value),
                    }
                )
        if details:
            raise Conflict(
                N_("%(object)s %(id)s refers to deleted records", object=meta.name, id=record_id),
                details,
            )
        draft = Draft(meta, None, index=0)
        draft.values = {n: row[n] for n, s in meta.fields.items() if s.unique}
        pipeline.check_unique(self.unit, meta, [draft], exclude_id=record_id)
        if draft.error is not None:
            raise draft.error
        table = meta.table
        now = utcnow()
        version = self.session.execute(
            sa.update(table)
            .where(table.c.id == record_id, table.c.deleted_at == deleted_at)
            .values(
                deleted_at=None,
                version=table.c.version + 1,
                updated_at=now,
                updated_by=self.user_id,
            )
            .returning(table.c.version)
        ).scalar()
        if version is None:  # restored (or deleted again) by someone else meanwhile
            raise Conflict(
                N_(
                    "%(object)s %(id)s was changed meanwhile; reload it",
                    object=meta.name,
                    id=record_id,
                )
            )
        pipeline.write_history(
            self.unit,
            [
                pipeline.history_row(
                    self.unit, meta, record_id, Action.RESTORE, int(version), {}, now
                )
            ],
        )
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

    # --- files and purge -------------------------------------------------------------

    def attach_file(
        self,
        object_name: str,
        record_id: int,
        field_name: str,
        data: bytes,
        file_name: str | None,
        *,
        store: FileStore,
        cap: int,
        expected_version: int | None = None,
    ) -> Record:
        """Put an upload into a ``file`` / ``image`` field of a live record: the update
        right on the record and the write right on the field, the size within the field's
        ``x-max-bytes`` (and ``cap``; else 413) and the sniffed type among its ``x-accept``
        (else 422) are checked before anything is stored. The write is an ordinary update
        (new version, history, hooks); the file before it stays until the record's purge.
        """
        meta = self.registry.get(object_name)
        spec = _file_field(meta, field_name)
        self.access.require(meta, Operation.UPDATE)
        row = self._active_row(meta, record_id, Operation.READ)
        pipeline.require_in_scope(self.unit, meta, [record_id], Operation.UPDATE)
        self.access.require_writable(meta, [field_name])
        if expected_version is not None and row["version"] != expected_version:
            raise _stale(meta, record_id, row["version"], expected_version)
        kind = cast(FileType, spec.type)
        limit = kind.max_bytes(spec, cap)
        if len(data) > limit:
            raise FileTooLarge(
                N_(
                    "the file is too large: %(field)s takes at most %(limit)s bytes",
                    field=field_name,
                    limit=limit,
                ),
                [{"field": field_name, "message": N_("%(size)s bytes sent", size=len(data))}],
            )
        if not data:
            raise ValidationFailed(
                N_("the file is empty"), [{"field": field_name, "message": N_("no content")}]
            )
        mime = files.sniff_mime(data)
        accepted = kind.accepted(spec)
        if accepted and mime not in accepted:
            raise ValidationFailed(
                N_("the file's content is not a type %(field)s takes", field=field_name),
                [
                    {
                        "field": field_name,
                        "message": N_(
                            "the content is %(mime)s; accepted: %(accepted)s",
                            mime=mime,
                            accepted=", ".join(accepted),
                        ),
                    }
                ],
            )
        stored = StoredFile(
            object_name=meta.name,
            field_name=field_name,
            record_id=record_id,
            storage_key=store.put(data),
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            mime=mime,
            original_name=files.safe_name(file_name),
            created_by=self.user_id,
            created_at=utcnow(),
        )
        self.session.add(stored)
        self.session.flush()
        return self.update(
            object_name, record_id, {"version": row["version"], field_name: stored.id}
        )

    def file_of(self, object_name: str, record_id: int, field_name: str) -> StoredFile:
        """The file a live record's field holds, for a caller who may read the record and
        the field; a hidden field, or one with no file, is 404 like a record out of scope.
        """
        meta = self.registry.get(object_name)
        _file_field(meta, field_name)
        self.access.require(meta, Operation.READ)
        row = self._active_row(meta, record_id, Operation.READ)
        value = row[field_name]
        if field_name in self.access.hidden(meta) or value is None:
            raise NotFound(
                N_(
                    "%(object)s %(id)s has no file in %(field)s",
                    object=meta.name,
                    id=record_id,
                    field=field_name,
                )
            )
        stored = self.session.get(StoredFile, value)
        if stored is None:
            raise NotFound(N_("the file is gone"))
        return stored

    def purge(self, object_name: str, record_id: int, *, store: FileStore) -> None:
        """Remove a soft-deleted record for good (administrators only): its row, the lines
        deleted with it, their history and stored files; the bytes leave the store once the
        transaction commits and no other row names them. A record that other records still
        point at (restrict) is refused (409); ``set_null`` pointers are cleared.
        """
        if self.caller is not None and not self.caller.is_admin:
            raise Forbidden(N_("only administrators may purge records"))
        meta = self.registry.get(object_name)
        row = self._row(meta, record_id)
        if row["deleted_at"] is None:
            raise Conflict(
                N_(
                    "%(object)s %(id)s is not deleted; delete it before purging it",
                    object=meta.name,
                    id=record_id,
                )
            )
        keys = self._purge(meta, [record_id])
        audit.write(
            self.session,
            audit.event(
                "record.purged",
                actor_id=self.user_id,
                actor_email=self.caller.email if self.caller else None,
                target=f"{meta.name}/{record_id}",
            ),
        )
        still = set(
            self.session.scalars(
                sa.select(StoredFile.storage_key).where(StoredFile.storage_key.in_(sorted(keys)))
            )
        )
        gone = keys - still

        def remove_bytes(_session: Session) -> None:
            for key in gone:
                store.delete(key)

        sa.event.listen(self.session, "after_commit", remove_bytes, once=True)

    def _purge(self, meta: ObjectMeta, ids: list[int]) -> set[str]:
        """Delete the rows ``ids`` of ``meta`` and what hangs on them; the store keys freed."""
        keys: set[str] = set()
        for child_name, spec in meta.children:
            child = self.registry.get(child_name)
            table = child.table
            child_ids = list(
                self.session.scalars(sa.select(table.c.id).where(table.c[spec.name].in_(ids)))
            )
            if child_ids:
                keys |= self._purge(child, child_ids)
        blocking = []
        for referrer_name, spec in meta.referrers:
            if spec.type.name == "master_detail":
                continue
            table = self.registry.get(referrer_name).table
            pointing = table.c[spec.name].in_(ids)
            if spec.on_delete == "set_null":
                self.session.execute(sa.update(table).where(pointing).values({spec.name: None}))
                continue
            blocking.extend(self._referring(table, pointing, referrer_name, spec.name))
        if blocking:
            raise ReferencedRecord(
                N_(
                    "%(object)s %(ids)s is still referred to and cannot be purged",
                    object=meta.name,
                    ids=", ".join(str(i) for i in ids[:10]),
                ),
                blocking,
            )
        files_of = sa.and_(StoredFile.object_name == meta.name, StoredFile.record_id.in_(ids))
        keys |= set(self.session.scalars(sa.select(StoredFile.storage_key).where(files_of)))
        self.session.execute(sa.delete(meta.table).where(meta.table.c.id.in_(ids)))
        self.session.execute(sa.delete(StoredFile).where(files_of))
        self.session.execute(
            sa.delete(RecordHistory).where(
                RecordHistory.object_name == meta.name, RecordHistory.record_id.in_(ids)
            )
        )
        self.session.execute(
            sa.delete(HierarchyLink).where(
                HierarchyLink.object_name == meta.name,
                sa.or_(HierarchyLink.ancestor_id.in_(ids), HierarchyLink.descendant_id.in_(ids)),
            )
        )
        return keys

    # --- rows ------------------------------------------------------------------------

    def _row(self, meta: ObjectMeta, record_id: int, operation: Operation | None = None) -> Any:
        """The stored row; a record outside the caller's ``operation`` scope is not found."""
        if not 1 <= record_id <= INT64_MAX:  # no such id; and the driver could not bind it
            raise NotFound(N_("no %(object)s with id %(id)s", object=meta.name, id=record_id))
        statement = meta.row_statement
        if operation is not None:
            visible = self.access.condition(meta, operation)
            if visible is not None:
                statement = statement.where(visible)
        row = self.session.execute(statement, {"id": record_id}).mappings().first()
        if row is None:
            raise NotFound(N_("no %(object)s with id %(id)s", object=meta.name, id=record_id))
        return row

    def _active_row(
        self, meta: ObjectMeta, record_id: int, operation: Operation | None = None
    ) -> Any:
        row = self._row(meta, record_id, operation)
        if row["deleted_at"] is not None:
            raise NotFound(N_("no %(object)s with id %(id)s", object=meta.name, id=record_id))
        return row


def _file_field(meta: ObjectMeta, field_name: str) -> FieldSpec:
    spec = meta.fields.get(field_name)
    if spec is None or not isinstance(spec.type, FileType):
        raise NotFound(
            N_("%(object)s has no file field %(field)s", object=meta.name, field=field_name)
        )
    return spec


def _require_object(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ValidationFailed(
            N_("a record must be a JSON object"), [{"field": "", "message": N_("not an object")}]
        )
    return dict(payload)


def _stale(meta: ObjectMeta, record_id: int, current: int | None, expected: int) -> StaleRecord:
    message = N_(
        "%(object)s %(id)s was changed by someone else (you had version %(version)s)",
        object=meta.name,
        id=record_id,
        version=expected,
    )
    details = (
        [{"field": "version", "message": N_("current version is %(version)s", version=current)}]
        if current
        else []
    )
    return StaleRecord(message, details)


def _batch_error(draft: Draft) -> dict[str, Any]:
    error = draft.error
    assert error is not None
    return {
        "index": draft.index,
        "code": error.code,
        "message": error.message,
        "details": error.details,
    }


def _batch_refusal(bad: list[Draft], total: int) -> TrellisError:
    """One error naming every bad record by index; a refusal of rights stays what it is."""
    for draft in bad:
        if not isinstance(draft.error, ValidationFailed | DuplicateValue):
            assert draft.error is not None
            return draft.error
    details = []
    for draft in bad:
        assert draft.error is not None
        for detail in draft.error.details or [{"field": "", "message": draft.error.message}]:
            field = detail.get("field") or ""
            details.append(
                {
                    **detail,  # what else a detail tells (``duplicate_of``…)
                    "index": draft.index,
                    "field": f"[{draft.index}].{field}" if field else f"[{draft.index}]",
                    "message": detail.get("message") or draft.error.message,
                }
            )
    return ValidationFailed(
        N_(
            "%(count)s of %(total)s records are not valid; nothing was written",
            count=len(bad),
            total=total,
        ),
        details,
    )


__all__ = ["RecordService"]

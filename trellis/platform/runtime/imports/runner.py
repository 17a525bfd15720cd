"""Running an import: every row through the one write path, in batches.

``execute`` reads the run's file again, converts each mapped cell with its field type,
resolves lookups by their key field (one query per lookup column and batch), and hands
the rows to ``RecordService.create_many`` ``IMPORT_BATCH`` at a time — so formulas,
rules, roll-ups, permissions and history apply exactly as to any other create. It acts
as the user who uploaded the file, with their rights as they are when it runs.

- *Skip invalid*: the bad rows of a batch are reported and the rest written. A batch
  the service refuses as a whole (a failure only a write can show) is rolled back to its
  savepoint and written row by row, so its good rows still land.
- *All or nothing*: the same, inside one savepoint around the whole run; if any row is
  bad it is rolled back, so nothing lands — but the report lists every bad row.

``start`` queues a run as the job ``imports.run`` (RQ with Redis, else in-process after
commit); ``run_here`` runs one now, for the command line.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from trellis import defaults
from trellis.exceptions import NotFound, TrellisError
from trellis.platform.messages import N_, Localized, Message
from trellis.platform.metadata.fieldtypes import FieldConversionError
from trellis.platform.metadata.permissions import Operation
from trellis.platform.runtime import files, jobs
from trellis.platform.runtime.imports import mapping
from trellis.platform.runtime.imports.mapping import ColumnMap
from trellis.platform.runtime.imports.service import (
    ImportLimits,
    ImportMode,
    ImportService,
    ImportStatus,
)
from trellis.platform.runtime.models import ImportRun, utcnow
from trellis.platform.runtime.records import RecordService

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.identity import Caller
    from trellis.platform.runtime.registry import MetaRegistry

Progress = Callable[[int, int | None, str], None]
Problem = dict[str, Any]  # {"row", "column", "message"}


def start(session: Session, run: ImportRun) -> ImportRun:
    """Queue a configured run as the job ``imports.run`` (key ``import:<id>``, so a run is
    queued once) and commit: on RQ when Redis is configured, else in this process right
    after the commit. The job's progress is what pages and ``trellis job show`` follow."""
    run.status = ImportStatus.QUEUED
    job = jobs.enqueue(
        session, "imports.run", {"import_id": run.id}, key=f"import:{run.id}",
        created_by=run.created_by,
    )  # fmt: skip
    run.job_id = job.id
    session.commit()
    session.refresh(run)
    return run


def run_here(session: Session, run: ImportRun, progress: Progress) -> ImportRun:
    """Run a configured run in this process, now (the CLI, which shows its own progress)."""
    run.status = ImportStatus.QUEUED
    session.commit()
    execute(session, run.id, progress)
    session.commit()
    return run


@jobs.job("imports.run", max_attempts=3)
def run_import(ctx: jobs.JobContext, *, import_id: int) -> dict[str, Any]:
    """The job: ``execute`` in the job's session (the runner commits it), its progress
    reported through the job. A retried attempt finds the run no longer queued if an
    earlier attempt committed, and writes nothing twice."""
    run = execute(ctx.session, import_id, ctx.progress)
    return {"status": run.status, "created": run.created_count, "errors": run.error_count}


def execute(session: Session, import_id: int, progress: Progress) -> ImportRun:
    """Run the queued import ``import_id`` in ``session`` (the caller commits). A run
    that is not queued is left as it is, so running it twice writes nothing twice."""
    run = session.get(ImportRun, import_id, with_for_update=True)
    if run is None:
        raise NotFound(N_("no import with id %(id)s", id=import_id))
    if run.status != ImportStatus.QUEUED:
        return run
    run.status, run.started_at = ImportStatus.RUNNING, utcnow()
    try:
        importer = _Importer(session, run)
    except TrellisError as exc:  # the file, the user or a mapped field is gone
        return _finish(run, ImportStatus.FAILED, 0, [], exc.message)
    importer.run(progress)
    return run


class _Importer:
    """One run's state: its rows, mapping, service and what it has reported."""

    def __init__(self, session: Session, run: ImportRun) -> None:
        registry: MetaRegistry = current_app.extensions["trellis.registry"]
        registry.ensure_current(session)
        self.session = session
        self.run_row = run
        self.registry = registry
        self.records = RecordService(session, registry, _caller_of(session, registry, run))
        imports = ImportService(
            session, registry, self.records.caller, files.current_store(), ImportLimits.of_app()
        )
        self.meta = registry.get(run.object_name)
        self.records.access.require(self.meta, Operation.CREATE)
        self.sheet = imports.sheet_of(run)
        fields = mapping.importable_fields(self.records.access, self.meta)
        self.maps = mapping.check_mapping(
            registry, self.meta, self.sheet.columns, fields, run.mapping, run.lookup_keys
        )
        self.column_of = {m.field: m.column for m in self.maps}
        # Each plain column's conversion chosen once; lookups matched by key per batch.
        self.converters = [
            (m, mapping.cell_converter(self.meta.fields[m.field])) for m in self.maps if not m.key
        ]
        self.keyed = [m for m in self.maps if m.key]
        self.problems: list[Problem] = []
        self.bad_rows: set[int] = set()
        self.analyzed_at = 0  # rows this run had written at its last ANALYZE

    def run(self, progress: Progress) -> None:
        rows, total = self.sheet.rows, len(self.sheet.rows)
        whole = self.session.begin_nested()
        created = 0
        progress(0, total, "")
        for start in range(0, total, defaults.IMPORT_BATCH):
            batch = rows[start : start + defaults.IMPORT_BATCH]
            with _collector_paused():
                created += self._write(self._payloads(batch))
            self._keep_statistics(created)
            done = start + len(batch)
            self.run_row.done_rows = done
            progress(done, total, N_("%(done)s of %(total)s rows", done=done, total=total))
        all_or_nothing = self.run_row.mode == ImportMode.ALL_OR_NOTHING
        if all_or_nothing and self.bad_rows:
            whole.rollback()
            self.run_row.done_rows = total  # every row was checked; the rollback undid the count
            message = N_(
                "%(count)s of %(total)s rows are not valid; nothing was imported",
                count=len(self.bad_rows),
                total=total,
            )
            _finish(self.run_row, ImportStatus.REFUSED, 0, self.problems, message)
            return
        whole.commit()
        message = N_("%(created)s of %(total)s rows imported", created=created, total=total)
        _finish(self.run_row, ImportStatus.SUCCEEDED, created, self.problems, message)

    def _keep_statistics(self, created: int) -> None:
        """On PostgreSQL, ANALYZE the table each time this run has doubled what it last
        saw (a few times per run). The run's rows are one uncommitted transaction, which
        autovacuum cannot see: with the statistics of the table before it, the planner
        kept scanning the whole growing table for the uniqueness check of every batch
        (measured: 0.4 s a batch at 10,000 rows, against 3 ms after ANALYZE, which
        counts the transaction's own rows)."""
        if self.session.get_bind().dialect.name != "postgresql":
            return
        if created < max(defaults.IMPORT_BATCH, 2 * self.analyzed_at):
            return
        preparer = self.session.get_bind().dialect.identifier_preparer
        self.session.execute(sa.text(f"ANALYZE {preparer.quote(self.meta.table.name)}"))
        self.analyzed_at = created

    # --- rows into payloads -----------------------------------------------------------

    def _payloads(
        self, batch: list[tuple[int, tuple[Any, ...]]]
    ) -> list[tuple[int, dict[str, Any]]]:
        """The batch's rows as record payloads; rows with a cell that does not convert (or
        names an unknown lookup) are reported and left out."""
        found = [(m, self._resolve(m, batch)) for m in self.keyed]
        payloads = []
        for number, cells in batch:
            width = len(cells)
            payload: dict[str, Any] = {}
            for column_map, convert in self.converters:
                cell = cells[column_map.index] if column_map.index < width else ""
                if cell == "":
                    continue
                try:
                    value = convert(cell)
                except FieldConversionError as exc:
                    self._report(number, column_map.column, str(exc.message))
                    continue
                if value is not None:
                    payload[column_map.field] = value
            for column_map, ids in found:
                cell = cells[column_map.index] if column_map.index < width else ""
                if cell == "":
                    continue
                record_id = ids.get(number)
                if record_id is None:
                    self._report_unknown(number, column_map, cell)
                else:
                    payload[column_map.field] = record_id
            if number not in self.bad_rows:
                payloads.append((number, payload))
        return payloads

    def _report_unknown(self, number: int, column_map: ColumnMap, cell: Any) -> None:
        self._report(
            number,
            column_map.column,
            N_(
                "no %(object)s with %(field)s %(value)s",
                object=str(self.meta.fields[column_map.field].target),
                field=column_map.key,
                value=repr(cell),
            ),
        )

    def _resolve(
        self, column_map: ColumnMap, batch: list[tuple[int, tuple[Any, ...]]]
    ) -> dict[int, int]:
        """``{row number: id}`` of the batch's rows whose cell of ``column_map`` names a
        live target record the caller may read (one query for the batch)."""
        assert column_map.key is not None
        target = self.registry.get(str(self.meta.fields[column_map.field].target))
        key_spec = target.fields[column_map.key]
        keys: dict[int, Any] = {}
        for number, cells in batch:
            cell = cells[column_map.index] if column_map.index < len(cells) else ""
            if cell != "":
                try:
                    keys[number] = mapping.key_value(key_spec, cell)
                except FieldConversionError:
                    continue
        if not keys:
            return {}
        key = target.table.c[column_map.key]
        statement = sa.select(key, target.table.c.id).where(
            key.in_(sorted(set(keys.values()), key=str)), target.table.c.deleted_at.is_(None)
        )
        visible = self.records.access.condition(target, Operation.READ)
        if visible is not None:
            statement = statement.where(visible)
        ids = {row[0]: row[1] for row in self.session.execute(statement)}
        return {number: ids[value] for number, value in keys.items() if value in ids}

    # --- payloads into records -------------------------------------------------------

    def _write(self, payloads: list[tuple[int, dict[str, Any]]]) -> int:
        """Write a batch (falling back to row by row when it is refused as a whole); the
        number of records created."""
        if not payloads:
            return 0
        savepoint = self.session.begin_nested()
        try:
            result = self.records.create_many(
                self.meta.name, [p for _n, p in payloads], skip_invalid=True, with_items=False
            )
        except (TrellisError, IntegrityError):
            savepoint.rollback()
            return sum(self._write_one(number, payload) for number, payload in payloads)
        savepoint.commit()
        numbers = [number for number, _payload in payloads]
        for error in result["errors"]:
            details = [_in_rows(d, numbers) for d in error["details"]]
            self._report_error(numbers[error["index"]], error["message"], details)
        created: int = result["created"]
        return created

    def _write_one(self, number: int, payload: dict[str, Any]) -> int:
        savepoint = self.session.begin_nested()
        try:
            self.records.create(self.meta.name, payload)
        except TrellisError as exc:
            savepoint.rollback()
            self._report_error(number, exc.message, exc.details)
            return 0
        except IntegrityError as exc:
            savepoint.rollback()
            self._report(number, "", N_("the database refused the row: %(why)s", why=_why(exc)))
            return 0
        savepoint.commit()
        return 1

    # --- the report ------------------------------------------------------------------

    def _report_error(self, number: int, message: str, details: list[dict[str, Any]]) -> None:
        if not details:
            self._report(number, "", message)
        for detail in details:
            field = str(detail.get("field") or "")
            column = self.column_of.get(field.split(".")[0].split("[")[0], field)
            self._report(number, column, str(detail.get("message") or message))

    def _report(self, number: int, column: str, message: str) -> None:
        self.bad_rows.add(number)
        self.problems.append({"row": number, "column": column, **stored_message(message)})


def _in_rows(detail: dict[str, Any], numbers: list[int]) -> dict[str, Any]:
    """A value repeated within a batch is refused with the index of the batch's record that
    has it first (``duplicate_of``); the report names that record's row in the file."""
    first = detail.get("duplicate_of")
    if not isinstance(first, int):
        return detail
    message = detail["message"]
    value = message.params.get("value") if isinstance(message, Message) else None
    row = numbers[first]
    return {**detail, "message": N_("%(value)s is also in row %(row)s", value=value, row=row)}


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector held off while one batch is converted and written.

    A batch's drafts, events and history rows (some ten containers a row) live until
    the batch is written, long enough to be promoted to the oldest generation, so a
    large import set off a full collection — a walk over every object of the process —
    every few batches: 7–18 of them, 2–6 s of a 100,000-row run. Reference counting
    frees the batch when it is done; what forms a cycle is collected after it, by the
    next collection. Between batches the collector runs as usual."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def stored_message(message: str) -> dict[str, Any]:
    """A message as a report keeps it: the English ``message``, and for a platform message
    its ``msgid`` and ``params`` too, so a page can tell it in the reader's language."""
    stored: dict[str, Any] = {"message": str(message)}
    if isinstance(message, Message) and not isinstance(message, Localized):
        stored["msgid"] = message.msgid
        stored["params"] = json.loads(json.dumps(message.params, default=str))
    return stored


def told_entry(entry: dict[str, Any], tell: Callable[[Any], str]) -> str:
    """A report entry's message through ``tell`` (a page's ``told``), else as stored."""
    if "msgid" not in entry:
        return str(entry["message"])
    try:
        return tell(Message(entry["msgid"], **entry["params"]))
    except (KeyError, TypeError, ValueError):
        return str(entry["message"])


def _caller_of(session: Session, registry: MetaRegistry, run: ImportRun) -> Caller | None:
    """The uploader, with their rights as they are now; ``None`` for a system import."""
    if run.created_by is None:
        return None
    from trellis.platform.runtime.api import caller_of
    from trellis.platform.runtime.identity.sessions import identity_of_user

    identity = identity_of_user(session, run.created_by)
    registry.ensure_current(session, identity.revision)
    return caller_of(identity)


def _finish(
    run: ImportRun, status: ImportStatus, created: int, problems: list[Problem], message: str
) -> ImportRun:
    run.status = status
    run.created_count = created
    run.report = sorted(problems, key=lambda p: p["row"])  # by row (stable: columns in order)
    run.error_count = len({p["row"] for p in problems})
    run.message = str(message)[:500]
    run.finished_at = utcnow()
    return run


def _why(exc: IntegrityError) -> str:
    return str(exc.orig).splitlines()[0][:200] if exc.orig is not None else "integrity error"


__all__ = ["Progress", "execute", "start", "stored_message", "told_entry"]

"""Import runs: an upload kept as a run, its mapping and mode, and what it reports.

``ImportService`` is what the API, the pages and the CLI call. An upload is checked
(the create right, its size and row count, that it is a spreadsheet at all) before its
bytes go to the file store and a run (``models.ImportRun``) is written; a run is then
configured (mapping, lookup keys, mode) and started. The run itself is
``runner.execute``; ``runner.start`` is the one place that decides how it is run.

A run belongs to the user who uploaded it: others (administrators aside) do not see it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import g, has_request_context

from trellis import defaults
from trellis.exceptions import BadRequest, Conflict, FileTooLarge, NotFound
from trellis.platform.messages import N_
from trellis.platform.metadata.permissions import Operation
from trellis.platform.runtime import files
from trellis.platform.runtime.access import Access
from trellis.platform.runtime.imports import mapping
from trellis.platform.runtime.imports.sheets import Sheet, read_sheet
from trellis.platform.runtime.models import ImportRun, iso
from trellis.platform.runtime.records.serialise import as_csv

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.files import FileStore
    from trellis.platform.runtime.identity import Caller
    from trellis.platform.runtime.registry import MetaRegistry, ObjectMeta


# Uploads read in a request, by storage key, for a run started in the same request (the
# one-shot ``POST …/import`` runs in-process right after its commit, in an app context of
# its own): the file is then parsed once, not twice (0.6 s of a 100,000-row CSV). The
# request's teardown (``release_request_sheets``) forgets them; a run started by another
# request, or by a worker, reads the stored file.
_READ_IN_REQUEST: dict[str, Sheet] = {}


def _keep_for_this_request(storage_key: str, sheet: Sheet) -> None:
    if has_request_context():
        g.setdefault("trellis_import_sheets", []).append(storage_key)
        _READ_IN_REQUEST[storage_key] = sheet


def release_request_sheets(_exc: BaseException | None = None) -> None:
    """Forget the sheets this request read (an app's ``teardown_request``)."""
    for storage_key in g.pop("trellis_import_sheets", ()):
        _READ_IN_REQUEST.pop(storage_key, None)


class ImportMode(StrEnum):
    """All or nothing (one bad row and nothing lands), or skip the invalid rows."""

    ALL_OR_NOTHING = "all_or_nothing"
    SKIP_INVALID = "skip_invalid"


class ImportStatus(StrEnum):
    """Where a run is: uploaded, waiting to run, running, or one of its three ends."""

    DRAFT = "draft"  # uploaded; its mapping may still change
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # rows written (in skip-invalid mode some may be reported)
    REFUSED = "refused"  # all or nothing, and some row was bad: nothing was written
    FAILED = "failed"  # the run could not be done at all (its message says why)


FINISHED = frozenset({ImportStatus.SUCCEEDED, ImportStatus.REFUSED, ImportStatus.FAILED})


class ImportLimits:
    """How large an import may be: bytes of the file, data rows in it."""

    def __init__(
        self, max_bytes: int = defaults.IMPORT_MAX_BYTES, max_rows: int = defaults.IMPORT_MAX_ROWS
    ) -> None:
        self.max_bytes = max_bytes
        self.max_rows = max_rows

    @classmethod
    def of_app(cls) -> ImportLimits:
        """The running app's limits (``TRELLIS_IMPORT_MAX_BYTES``, ``…_MAX_ROWS``)."""
        from flask import current_app

        config = current_app.config
        return cls(int(config["IMPORT_MAX_BYTES"]), int(config["IMPORT_MAX_ROWS"]))


class ImportService:
    """Import runs as ``caller`` may start and see them (``None``: the system)."""

    def __init__(
        self,
        session: Session,
        registry: MetaRegistry,
        caller: Caller | None,
        store: FileStore,
        limits: ImportLimits | None = None,
    ) -> None:
        self.session = session
        self.registry = registry
        self.caller = caller
        self.store = store
        self.limits = limits or ImportLimits()
        self.access = Access(registry, caller, session)

    # --- an upload -------------------------------------------------------------------

    def read(self, object_name: str, data: bytes) -> tuple[ObjectMeta, str, Sheet]:
        """The upload read as a sheet of ``object_name``, after the create right (403), the
        size (413) and the row count (400) are checked."""
        meta = self.registry.get(object_name)
        self.access.require(meta, Operation.CREATE)
        if len(data) > self.limits.max_bytes:
            raise FileTooLarge(
                N_(
                    "the file is too large: an import takes at most %(limit)s bytes",
                    limit=format(self.limits.max_bytes, ","),
                ),
                [{"field": "file", "message": N_("%(size)s bytes sent", size=len(data))}],
            )
        kind, sheet = read_sheet(data, self.limits.max_rows)
        return meta, kind, sheet

    def upload(self, object_name: str, data: bytes, file_name: str | None) -> ImportRun:
        """A draft run of the upload, its mapping suggested from the header."""
        meta, kind, sheet = self.read(object_name, data)
        run = ImportRun(
            object_name=meta.name,
            created_by=self.caller.user_id if self.caller else None,
            file_name=files.safe_name(file_name),
            file_format=kind,
            storage_key=(storage_key := self.store.put(data)),
            size=len(data),
            columns=sheet.columns,
            mapping=self.suggest(meta, sheet),
            lookup_keys={},
            mode=ImportMode.ALL_OR_NOTHING,
            status=ImportStatus.DRAFT,
            total_rows=len(sheet.rows),
            report=[],
        )
        self.session.add(run)
        self.session.flush()
        _keep_for_this_request(storage_key, sheet)
        return run

    def suggest(self, meta: ObjectMeta, sheet: Sheet) -> dict[str, str]:
        """The mapping the header suggests: columns named like fields the caller may fill."""
        fields = mapping.importable_fields(self.access, meta)
        return mapping.suggest_mapping(meta, sheet.columns, fields)

    def configure(self, run: ImportRun, column_map: Any, lookup_keys: Any, mode: Any) -> ImportRun:
        """Set a draft run's mapping (``{column: field}``), lookup keys (``{field: key
        field}``) and mode; 400 naming each problem, 409 once the run has started."""
        if run.status != ImportStatus.DRAFT:
            raise Conflict(N_("import %(id)s has started; it cannot change", id=run.id))
        if mode not in tuple(ImportMode):
            raise BadRequest(
                N_("mode is all_or_nothing or skip_invalid"),
                [{"field": "mode", "message": str(mode)}],
            )
        meta = self.registry.get(run.object_name)
        self.access.require(meta, Operation.CREATE)
        fields = mapping.importable_fields(self.access, meta)
        lookup_keys = lookup_keys or {}
        maps = mapping.check_mapping(
            self.registry, meta, list(run.columns), fields, column_map, lookup_keys
        )
        run.mapping = {m.column: m.field for m in maps}
        run.lookup_keys = {m.field: m.key for m in maps if m.key}
        run.mode = str(mode)
        self.session.flush()
        return run

    # --- reading runs ----------------------------------------------------------------

    def get(self, import_id: int) -> ImportRun:
        """A run the caller may see: their own (any, for an administrator); else 404."""
        run = self.session.get(ImportRun, import_id) if 1 <= import_id <= 2**62 else None
        if run is None or not self._may_see(run):
            raise NotFound(N_("no import with id %(id)s", id=import_id))
        return run

    def recent(self, object_name: str, limit: int = 10) -> list[ImportRun]:
        """The caller's latest runs into ``object_name``, newest first."""
        statement = (
            sa.select(ImportRun)
            .where(ImportRun.object_name == object_name)
            .order_by(ImportRun.id.desc())
            .limit(limit)
        )
        if self.caller is not None and not self.caller.is_admin:
            statement = statement.where(ImportRun.created_by == self.caller.user_id)
        return list(self.session.scalars(statement))

    def _may_see(self, run: ImportRun) -> bool:
        return self.caller is None or self.caller.is_admin or run.created_by == self.caller.user_id

    def sheet_of(self, run: ImportRun) -> Sheet:
        """The run's file, read again from the store (404 when its bytes are gone), unless
        this request has just read it."""
        kept = _READ_IN_REQUEST.get(run.storage_key)
        if kept is not None:
            return kept
        try:
            with self.store.open(run.storage_key) as handle:
                data = handle.read()
        except FileNotFoundError:
            raise NotFound(N_("the import's file is gone")) from None
        return read_sheet(data, self.limits.max_rows)[1]

    def preview(self, meta: ObjectMeta, sheet: Sheet, column_map: dict[str, str]) -> dict[str, Any]:
        """What a mapping step shows: columns, the first rows, the fields one may fill
        (with their labels and, for lookups, the key fields to match by)."""
        fields = mapping.importable_fields(self.access, meta)
        return {
            "columns": sheet.columns,
            "rows": [cells for _number, cells in sheet.rows[: defaults.IMPORT_PREVIEW_ROWS]],
            "total_rows": len(sheet.rows),
            "mapping": column_map,
            "fields": [
                {
                    "name": name,
                    "label": meta.fields[name].label,
                    "required": name in meta.definition.document.get("required", []),
                    "key_fields": mapping.key_fields(self.registry, meta.fields[name]),
                }
                for name in fields
            ],
        }


def describe(run: ImportRun) -> dict[str, Any]:
    """A run as the API shows it (the report is a download of its own)."""
    return {
        "id": run.id,
        "object": run.object_name,
        "file_name": run.file_name,
        "format": run.file_format,
        "size": run.size,
        "columns": run.columns,
        "mapping": run.mapping,
        "lookups": run.lookup_keys,
        "mode": run.mode,
        "status": run.status,
        "total_rows": run.total_rows,
        "done_rows": run.done_rows,
        "created": run.created_count,
        "errors": run.error_count,
        "message": run.message,
        "job_id": run.job_id,
        "created_by": run.created_by,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
    }


def report_csv(run: ImportRun) -> str:
    """The per-row report as CSV: row number, column, message."""
    return as_csv(["row", "column", "message"], run.report)


__all__ = [
    "FINISHED",
    "ImportLimits",
    "ImportMode",
    "ImportService",
    "ImportStatus",
    "describe",
    "report_csv",
]

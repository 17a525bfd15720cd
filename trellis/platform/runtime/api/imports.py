"""Imports: upload a CSV or XLSX file of records, follow its run, download its report."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, g, jsonify, request, url_for

from trellis.exceptions import BadRequest
from trellis.platform.messages import N_
from trellis.platform.runtime import files
from trellis.platform.runtime.api import bp, caller, registry
from trellis.platform.runtime.imports import (
    ImportLimits,
    ImportMode,
    ImportService,
    describe,
    report_csv,
    start,
)

MULTIPART_MARGIN = 1024 * 1024  # the form's other parts and boundaries, beyond the file


def import_service() -> ImportService:
    """An ``ImportService`` on the request's session, with the caller's rights."""
    return ImportService(
        g.session, registry(), caller(), files.current_store(), ImportLimits.of_app()
    )


def uploaded_file(limits: ImportLimits) -> tuple[bytes, str | None]:
    """The bytes and name of the multipart part ``file`` (400 when it is missing). The
    request may exceed ``MAX_CONTENT_LENGTH`` up to the import limit."""
    request.max_content_length = limits.max_bytes + MULTIPART_MARGIN
    upload = request.files.get("file")
    if upload is None:
        raise BadRequest(
            N_("send the file as multipart/form-data, in a part named file"),
            [{"field": "file", "message": N_("is required")}],
        )
    return upload.read(), upload.filename


def _json_part(name: str) -> Any:
    text = request.form.get(name)
    if text is None or text.strip() == "":
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise BadRequest(
            N_("%(part)s must be JSON", part=name), [{"field": name, "message": N_("not JSON")}]
        ) from None


@bp.post("/records/<object_name>/import/preview")
def preview_import(object_name: str) -> Any:
    """``POST /records/<object>/import/preview`` (multipart ``file``): the columns, the
    first rows, the mapping suggested from names and labels, and the fields one may fill;
    nothing is stored. 403 without the create right, 413, 400 for an unreadable file."""
    service = import_service()
    data, _name = uploaded_file(service.limits)
    meta, _kind, sheet = service.read(object_name, data)
    return jsonify(service.preview(meta, sheet, service.suggest(meta, sheet)))


@bp.post("/records/<object_name>/import")
def import_records(object_name: str) -> Any:
    """``POST /records/<object>/import`` (multipart: ``file``; optional ``mapping`` JSON
    ``{column: field}`` — else the suggested one —, ``lookups`` JSON ``{field: key field}``
    and ``mode``): the run, 202, at ``Location``. 403 without the create right, 413 for a
    file over the limit, 400 for too many rows or a mapping that cannot be used."""
    service = import_service()
    data, name = uploaded_file(service.limits)
    run = service.upload(object_name, data, name)
    column_map = _json_part("mapping")
    mode = request.form.get("mode") or ImportMode.ALL_OR_NOTHING
    column_map = run.mapping if column_map is None else column_map
    service.configure(run, column_map, _json_part("lookups"), mode)
    start(g.session, run)
    response = jsonify(describe(run))
    response.headers["Location"] = url_for("api.get_import", import_id=run.id)
    return response, 202


@bp.get("/imports/<int:import_id>")
def get_import(import_id: int) -> Any:
    """``GET /imports/<id>``: a run the caller started (any, for an administrator): its
    status, progress and counts; 404 otherwise."""
    return jsonify(describe(import_service().get(import_id)))


@bp.get("/imports/<int:import_id>/report")
def import_report(import_id: int) -> Any:
    """``GET /imports/<id>/report``: the per-row report as CSV (row, column, message)."""
    run = import_service().get(import_id)
    response = current_app.response_class(report_csv(run), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="import-{run.id}-report.csv"'
    return response

"""The import wizard: upload → map the columns (with a preview) and choose the options →
run → progress → report. Each step is a page over ``ImportService``, as the signed-in
user; the run is the API's (``runner.start``), so pages, API and CLI import alike.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _

from trellis.admin_ui import bp
from trellis.admin_ui.context import caller, commit, page_session, registry
from trellis.admin_ui.i18n import told
from trellis.admin_ui.pages import signed_in
from trellis.exceptions import BadRequest, Conflict, FileTooLarge
from trellis.platform.metadata.permissions import Operation
from trellis.platform.runtime import files
from trellis.platform.runtime.imports import (
    FINISHED,
    ImportLimits,
    ImportMode,
    ImportService,
    ImportStatus,
    report_csv,
    start,
)
from trellis.platform.runtime.imports.runner import told_entry
from trellis.platform.runtime.models import ImportRun, Job

REPORT_ROWS_SHOWN = 200


def _imports() -> ImportService:
    return ImportService(
        page_session(), registry(), caller(), files.current_store(), ImportLimits.of_app()
    )


@bp.route("/o/<object_name>/import", methods=["GET", "POST"])
@signed_in
def record_import(object_name: str) -> Any:
    """Step 1: the upload form (and the user's latest runs); a file that cannot be taken
    is shown on the form with its reason. 403 without the create right."""
    meta = registry().get(object_name)
    service = _imports()
    service.access.require(meta, Operation.CREATE)
    error = None
    if request.method == "POST":
        upload = request.files.get("file")
        try:
            if upload is None or not upload.filename:
                raise BadRequest(_("Choose a CSV or XLSX file."))
            run = service.upload(object_name, upload.read(), upload.filename)
        except (BadRequest, FileTooLarge) as exc:
            error = exc
        else:
            commit()
            return redirect(url_for("ui.import_run", import_id=run.id))
    page = render_template(
        "ui/imports/upload.html",
        meta=meta,
        error=error,
        recent=service.recent(meta.name),
        limits=service.limits,
    )
    return page, error.status if error is not None else 200


@bp.route("/imports/<int:import_id>", methods=["GET", "POST"])
@signed_in
def import_run(import_id: int) -> Any:
    """Step 2 while the run is a draft: the mapping with a preview, the lookup keys and the
    mode (POST: run it). Then: its progress (refreshed while it runs) and its report."""
    service = _imports()
    run = service.get(import_id)
    meta = registry().get(run.object_name)
    if run.status != ImportStatus.DRAFT:
        return _render_progress(run, meta)
    error = None
    if request.method == "POST":
        column_map = {c: request.form.get(f"map.{i}", "") for i, c in enumerate(run.columns)}
        lookups = {k[len("key.") :]: v for k, v in request.form.items() if k.startswith("key.")}
        try:
            service.configure(run, column_map, lookups, request.form.get("mode", ""))
        except (BadRequest, Conflict) as exc:
            error = exc
        else:
            start(page_session(), run)
            return redirect(url_for("ui.import_run", import_id=run.id))
    sheet = service.sheet_of(run)
    preview = service.preview(meta, sheet, dict(run.mapping))
    page = render_template(
        "ui/imports/mapping.html",
        meta=meta,
        run=run,
        preview=preview,
        modes=list(ImportMode),
        error=error,
    )
    return page, error.status if error is not None else 200


def _render_progress(run: ImportRun, meta: Any) -> Any:
    partial = request.headers.get("HX-Request") == "true"
    context = {
        "meta": meta,
        "run": run,
        "finished": run.status in FINISHED,
        "report": [
            {**entry, "message": told_entry(entry, told)}
            for entry in run.report[:REPORT_ROWS_SHOWN]
        ],
        "percent": int(100 * run.done_rows / run.total_rows) if run.total_rows else 100,
        "done_rows": run.done_rows,
        "total_rows": run.total_rows,
    }
    job = page_session().get(Job, run.job_id) if run.job_id and not context["finished"] else None
    if job is not None and job.progress_total:  # a running import's own rows are uncommitted
        context["percent"] = int(100 * (job.progress_done or 0) / job.progress_total)
        context["done_rows"], context["total_rows"] = job.progress_done or 0, job.progress_total
    template = "ui/imports/_progress.html" if partial else "ui/imports/run.html"
    return render_template(template, **context)


@bp.get("/imports/<int:import_id>/report.csv")
@signed_in
def import_report_download(import_id: int) -> Any:
    """The run's per-row report as CSV (row, column, message)."""
    run = _imports().get(import_id)
    response = current_app.response_class(report_csv(run), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="import-{run.id}-report.csv"'
    return response

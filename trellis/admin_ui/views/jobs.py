"""The Jobs pages: every background job for administrators (Setup → Jobs), with failed
jobs' errors and a Retry button, and one job's page with a live progress bar.

A job's page is also open to the user who started the job (an import's progress, say);
anyone else gets the 404 page, as the API answers. The progress bar is a partial the page
polls with htmx while the job is queued or running; once it is finished the partial comes
back without its trigger, and the polling stops.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from trellis.admin_ui import bp
from trellis.admin_ui.context import audit_context, caller, commit, page_session
from trellis.admin_ui.pages import DESIGNERS, admin_only, signed_in
from trellis.platform.runtime import audit
from trellis.platform.runtime.jobs.service import STATUSES, get_job, list_jobs, retry_job
from trellis.platform.runtime.models import Job

DESIGNERS.append(("ui.job_list", lambda: _("Jobs")))

JOB_PAGE_SIZE = 50


def status_labels() -> dict[str, str]:
    """The four statuses of a job, as the pages name them."""
    return {
        "queued": _("Queued"),
        "running": _("Running"),
        "done": _("Done"),
        "failed": _("Failed"),
    }


@bp.get("/setup/jobs")
@admin_only
def job_list() -> Any:
    """``/setup/jobs``: jobs newest first, of one ``status`` if asked, a page at a time
    before the ``before`` id; failed ones with their error and a Retry button."""
    asked = request.args.get("status", "")
    status = asked if asked in STATUSES else None
    before = request.args.get("before", "")
    start = int(before[:18]) if before.isdigit() else None
    found = list_jobs(page_session(), status=status, before_id=start, limit=JOB_PAGE_SIZE + 1)
    page = found[:JOB_PAGE_SIZE]
    return render_template(
        "ui/setup/jobs.html",
        jobs=page,
        status=status,
        statuses=status_labels(),
        next_before=page[-1].id if len(found) > JOB_PAGE_SIZE else None,
    )


def _visible_job(job_id: int) -> Job:
    """The job, if the signed-in user is an administrator or started it (else 404)."""
    who = caller()
    return get_job(page_session(), job_id, None if who.is_admin else who.user_id)


@bp.get("/jobs/<int:job_id>")
@signed_in
def job_page(job_id: int) -> Any:
    """``/jobs/<id>``: one job — what it runs, its attempts, progress, result or error."""
    return render_template("ui/setup/job.html", job=_visible_job(job_id), statuses=status_labels())


@bp.get("/jobs/<int:job_id>/progress")
@signed_in
def job_progress(job_id: int) -> Any:
    """The job page's progress partial (htmx polls it while the job is not finished)."""
    return render_template(
        "ui/setup/_job_progress.html", job=_visible_job(job_id), statuses=status_labels()
    )


@bp.post("/setup/jobs/<int:job_id>/retry")
@admin_only
def job_retry(job_id: int) -> Any:
    """``POST /setup/jobs/<id>/retry``: queue a failed job again (audited as the API does);
    a job that has not failed is refused with a message."""
    from trellis.exceptions import NotRetryable

    session = page_session()
    try:
        job = retry_job(session, job_id)
    except NotRetryable:
        flash(_("Only a failed job can be retried."), "error")
        return redirect(url_for("ui.job_page", job_id=job_id))
    audit.record(
        session,
        "job.retried",
        actor_id=caller().user_id,
        target=f"job/{job_id}",
        detail={"name": job.name},
        **audit_context(),
    )
    commit()
    flash(_("Job %(id)s is queued again.", id=job_id), "info")
    return redirect(url_for("ui.job_page", job_id=job_id))

"""Background jobs: a caller's own, or every job for administrators, who also retry them."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify, request

from trellis.exceptions import BadRequest, Forbidden
from trellis.platform.runtime.api import bp, caller, commit, record_event
from trellis.platform.runtime.api.schemas import (
    JobPageSchema,
    JobQuerySchema,
    JobSchema,
    job_source,
    load,
)
from trellis.platform.runtime.jobs.service import get_job, list_jobs, retry_job

JOB, JOBS, JOB_QUERY = JobSchema(), JobPageSchema(), JobQuerySchema()


def _owner() -> int | None:
    """Whose jobs the caller may see: everyone's (``None``) for administrators, else theirs."""
    who = caller()
    return None if who.is_admin else who.user_id


@bp.get("/jobs")
def list_jobs_view() -> Any:
    """``GET /jobs``: jobs newest first, by ``status``, before an id, at most 500 — every
    job for administrators, the caller's own for anyone else; 400 for a bad parameter.
    """
    args = load(JOB_QUERY, request.args, what="query", refusal=BadRequest)
    items = list_jobs(
        g.session,
        owner_id=_owner(),
        status=args.get("status"),
        before_id=args.get("before"),
        limit=args["limit"],
    )
    return jsonify(JOBS.dump({"items": [job_source(job) for job in items]}))


@bp.get("/jobs/<int:job_id>")
def get_job_view(job_id: int) -> Any:
    """``GET /jobs/<id>``: one job with its progress (404 when the caller may not see it)."""
    return jsonify(JOB.dump(job_source(get_job(g.session, job_id, _owner()))))


@bp.post("/jobs/<int:job_id>/retry")
def retry_job_view(job_id: int) -> Any:
    """``POST /jobs/<id>/retry``: queue a failed job again (administrators only, else 403;
    409 ``not_retryable`` unless it failed). It runs after the commit."""
    if not caller().is_admin:
        raise Forbidden("only administrators may retry jobs")
    job = retry_job(g.session, job_id)
    record_event("job.retried", f"job/{job_id}", {"name": job.name})
    commit()
    g.session.refresh(job)
    return jsonify(JOB.dump(job_source(job)))

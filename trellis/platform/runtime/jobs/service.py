"""Reading and retrying jobs: what the API, the CLI and the Jobs page share.

Administrators see every job; anyone else sees the jobs they started (``created_by``),
and a job of someone else's is "not found", so ids do not leak. Only administrators
retry: a retry re-runs work on someone's behalf.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from trellis.exceptions import NotFound, NotRetryable
from trellis.platform.metadata.fieldtypes import INT64_MAX
from trellis.platform.runtime.jobs.queue import after_commit_dispatch
from trellis.platform.runtime.jobs.runner import JOBS
from trellis.platform.runtime.models import Job, JobStatus, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

STATUSES = tuple(status.value for status in JobStatus)


def list_jobs(
    session: Session,
    *,
    owner_id: int | None = None,
    status: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[Job]:
    """Jobs newest first: of ``owner_id`` only when given, of one ``status``, older than
    ``before_id`` (the page's cursor), at most ``limit``."""
    query = sa.select(Job).order_by(Job.id.desc()).limit(limit)
    if owner_id is not None:
        query = query.where(Job.created_by == owner_id)
    if status is not None:
        query = query.where(Job.status == status)
    if before_id is not None:
        query = query.where(Job.id < before_id)
    return list(session.scalars(query))


def get_job(session: Session, job_id: int, owner_id: int | None = None) -> Job:
    """The job ``job_id`` (only if ``owner_id`` started it, when given); else ``NotFound``."""
    job = session.get(Job, job_id) if 1 <= job_id <= INT64_MAX else None
    if job is None or (owner_id is not None and job.created_by != owner_id):
        raise NotFound(f"no job with id {job_id}")
    return job


def retry_job(session: Session, job_id: int) -> Job:
    """Queue a failed job again, with a fresh set of attempts; it runs after the commit.

    The change is one conditional UPDATE (``WHERE status = 'failed'``), so two retries at
    once queue it once; the second is refused with ``NotRetryable``.
    """
    job = get_job(session, job_id)
    retried = session.execute(
        sa.update(JOBS)
        .where(JOBS.c.id == job_id, JOBS.c.status == JobStatus.FAILED)
        .values(
            status=JobStatus.QUEUED,
            attempts=0,
            run_at=utcnow(),
            pushed_at=None,
            finished_at=None,
            error=None,
        )
    )
    if retried.rowcount != 1:  # type: ignore[attr-defined]
        raise NotRetryable(f"job {job_id} is {job.status}: only a failed job can be retried")
    session.refresh(job)
    after_commit_dispatch(session, job_id)
    return job

"""Background work: jobs (RQ or in-process), the outbox and its relay, schedules, progress.

The interface other capabilities use (see ``docs/jobs.md``)::

    from trellis.platform.runtime import jobs

    @jobs.job("imports.run", queue="default", max_attempts=5)
    def run_import(ctx: jobs.JobContext, *, import_id: int) -> dict | None: ...

    jobs.enqueue(session, "imports.run", {"import_id": 5}, key="import:5")
    jobs.periodic("dealers.deactivate_expired", cron="0 2 * * *", job="dealers.deactivate")
    jobs.outbox.emit(session, kind="webhook", payload={...})

    @jobs.outbox.deliverer("webhook")
    def deliver(session, event: jobs.outbox.OutboxEvent) -> None: ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trellis.platform.runtime.jobs import outbox
from trellis.platform.runtime.jobs.definitions import JobDefinition, UnknownJob, definition, job
from trellis.platform.runtime.jobs.queue import enqueue, enqueue_once, uses_redis
from trellis.platform.runtime.jobs.runner import JobContext, run_job
from trellis.platform.runtime.jobs.scheduler import Schedule, periodic, schedule_source
from trellis.platform.runtime.models import Job, JobStatus

if TYPE_CHECKING:
    from flask import Flask

__all__ = [
    "Job",
    "JobContext",
    "JobDefinition",
    "JobStatus",
    "Schedule",
    "UnknownJob",
    "definition",
    "enqueue",
    "enqueue_once",
    "init_app",
    "job",
    "outbox",
    "periodic",
    "run_job",
    "schedule_source",
    "uses_redis",
]


def init_app(app: Flask) -> None:
    """Import the modules that define jobs (``TRELLIS_JOB_MODULES``), so this process
    knows every job it may enqueue or, without Redis, run."""
    from trellis.platform.runtime.jobs.worker import import_job_modules

    import_job_modules(app)

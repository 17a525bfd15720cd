"""Approval deadlines on the job scheduler, registered on import.

The schedule ``approvals.deadlines`` enqueues ``approvals.run_deadlines`` every minute
(``APPROVAL_DEADLINES_EVERY``); its job key ``cron:approvals.deadlines:<slot>`` makes it one
job per minute however many workers tick. The job runs ``ApprovalService.run_deadlines``
in the job's own write session, committed by the runner with the job's outcome, as of
the slot's moment (the last part of the key; the clock when run by hand). Each
deadline is acted on once even when two runs overlap (a slot caught up late beside the
next one): ``run_deadlines`` takes each task under its request's row lock and re-reads it.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from trellis import defaults
from trellis.platform.runtime import jobs
from trellis.platform.runtime.models import utcnow

if TYPE_CHECKING:
    from trellis.platform.runtime.registry import MetaRegistry

JOB = "approvals.run_deadlines"
SCHEDULE = "approvals.deadlines"
PAGE = 200


@jobs.job(JOB, max_attempts=3)
def run_deadlines(ctx: jobs.JobContext) -> dict[str, Any]:
    """Act on every approval task whose deadline has passed (remind, escalate, decide)."""
    from trellis.platform.runtime.workflow.approvals import ApprovalService

    registry: MetaRegistry = ctx.app.extensions["trellis.registry"]
    registry.ensure_current(ctx.session)
    now = _slot(ctx.key) or utcnow()
    acted = 0
    while True:  # in pages, so a backlog is cleared by one run
        done = ApprovalService(ctx.session, registry, None).run_deadlines(now, limit=PAGE)
        acted += done
        if done < PAGE:
            break
    return {"acted": acted, "as_of": now.isoformat()}


def _slot(key: str | None) -> dt.datetime | None:
    """The moment of a schedule's job key (``cron:<name>:<YYYYMMDDTHHMMSSZ>``)."""
    stamp = (key or "").rsplit(":", 1)[-1]
    try:
        return dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


jobs.periodic(SCHEDULE, cron=defaults.APPROVAL_DEADLINES_EVERY, job=JOB)

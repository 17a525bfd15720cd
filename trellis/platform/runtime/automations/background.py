"""Scheduled automations on the jobs runtime (``runtime/jobs``), registered on import.

- Every cron automation is a schedule of the worker's scheduler (``jobs.schedule_source``),
  named ``automation.<x-name>``: each slot enqueues ``automations.run_schedule`` once
  across workers (the job key ``cron:automation.<x-name>:<slot>``), which runs it over
  the records its condition selects, each record once per slot.
- ``automations.scan_dates`` runs every minute (``AUTOMATION_SCHEDULE_EVERY``): it finds
  the date automations due (``schedule.due_date_runs``) and enqueues one
  ``automations.run_record`` job per record and date, keyed ``auto:<name>:<id>:<date>``.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from trellis import defaults
from trellis.extensions import database_of
from trellis.platform.runtime import jobs
from trellis.platform.runtime.automations import schedule
from trellis.platform.runtime.models import utcnow

if TYPE_CHECKING:
    from collections.abc import Iterator

    from flask import Flask

    from trellis.platform.runtime.registry import MetaRegistry

SCHEDULE_PREFIX = "automation."


def _registry(ctx: jobs.JobContext) -> MetaRegistry:
    registry: MetaRegistry = ctx.app.extensions["trellis.registry"]
    registry.ensure_current(ctx.session)
    return registry


@jobs.job("automations.run_record", max_attempts=5)
def run_record(
    ctx: jobs.JobContext, *, automation: str, record_id: int, key: str, due: str | None = None
) -> dict[str, Any]:
    """One scheduled automation on one record, once per ``key``."""
    day = dt.date.fromisoformat(due) if due else None
    outcome = schedule.run_on_record(
        ctx.session, _registry(ctx), automation, record_id, key, due=day
    )
    return {"outcome": outcome}


@jobs.job("automations.run_schedule", max_attempts=5)
def run_schedule(ctx: jobs.JobContext, *, automation: str) -> dict[str, Any]:
    """One slot of a cron automation (the slot is the last part of the job's key)."""
    slot = (ctx.key or f"job{ctx.job_id}").rsplit(":", 1)[-1]
    return schedule.run_schedule(ctx.session, _registry(ctx), automation, slot)


@jobs.job("automations.scan_dates", max_attempts=3)
def scan_dates(ctx: jobs.JobContext, *, today: str | None = None) -> dict[str, Any]:
    """Enqueue a job for each record whose date automation is due on the day of the
    schedule's slot (``today`` when given by hand; the current UTC day without a slot)."""
    day = dt.date.fromisoformat(today) if today else _slot_day(ctx.key) or utcnow().date()
    due = schedule.due_date_runs(ctx.session, _registry(ctx), day)
    for run in due:
        jobs.enqueue(
            ctx.session,
            "automations.run_record",
            {
                "automation": run.automation,
                "record_id": run.record_id,
                "key": run.key,
                "due": run.date.isoformat(),
            },
            key=run.key,
        )
    return {"enqueued": len(due)}


def _slot_day(key: str | None) -> dt.date | None:
    """The UTC day of a schedule's job key (``cron:<name>:<YYYYMMDDTHHMMSSZ>``)."""
    stamp = (key or "").rsplit(":", 1)[-1]
    try:
        return dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").date()
    except ValueError:
        return None


jobs.periodic(
    "automations.dates", cron=defaults.AUTOMATION_SCHEDULE_EVERY, job="automations.scan_dates"
)


@jobs.schedule_source
def cron_schedules(app: Flask) -> Iterator[jobs.Schedule]:
    """A schedule for each active cron automation, read from the current metadata."""
    registry: MetaRegistry = app.extensions["trellis.registry"]
    with database_of(app).session() as session:
        registry.ensure_current(session)
    for automation in schedule.cron_automations(registry):
        yield jobs.Schedule(
            SCHEDULE_PREFIX + automation.name,
            automation.trigger["cron"],
            "automations.run_schedule",
            {"automation": automation.name},
        )

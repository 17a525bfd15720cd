"""Schedules: jobs enqueued on a cron expression by the worker, each slot exactly once.

``periodic("dealers.deactivate_expired", cron="0 2 * * *", job="dealers.deactivate")``
declares one. Every worker ticks the scheduler; a tick enqueues, for each schedule, the job
of its latest slot with the key ``cron:<schedule>:<slot>`` — the unique key makes it one
job however many workers tick at once, and a second tick within the slot a no-op. A slot
missed entirely (no worker was running) is caught up once if it is less than
``misfire_grace`` old; older ones are skipped rather than run late in a burst.

Schedules come from ``periodic`` (code) and from *sources*: functions the scheduler asks
on every tick (automations with a cron trigger register one, reading their metadata).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from croniter import croniter

from trellis.extensions import database_of
from trellis.platform.runtime.jobs.queue import enqueue_once
from trellis.platform.runtime.models import utcnow

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

DEFAULT_MISFIRE_GRACE = 3600.0  # seconds


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A job enqueued on every slot of a cron expression (UTC; a sixth field is seconds)."""

    name: str
    cron: str
    job: str
    payload: dict[str, Any] = dataclasses.field(default_factory=dict)
    misfire_grace: float = DEFAULT_MISFIRE_GRACE

    def latest_slot(self, now: dt.datetime) -> dt.datetime:
        """The latest moment of the expression at or before ``now``."""
        slot: dt.datetime = croniter(self.cron, now + dt.timedelta(microseconds=1)).get_prev(
            dt.datetime
        )
        return slot

    def key(self, slot: dt.datetime) -> str:
        """The job key of one slot: ``cron:<name>:<YYYYMMDDTHHMMSSZ>``."""
        return f"cron:{self.name}:{slot.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}"


ScheduleSource = Callable[["Flask"], Iterable[Schedule]]
_schedules: dict[str, Schedule] = {}
_sources: list[ScheduleSource] = []


def periodic(
    name: str,
    cron: str,
    job: str,
    payload: dict[str, Any] | None = None,
    misfire_grace: float = DEFAULT_MISFIRE_GRACE,
) -> Schedule:
    """Declare the schedule ``name``: job ``job`` with ``payload`` on each slot of ``cron``."""
    if not croniter.is_valid(cron):
        raise ValueError(f"not a cron expression: {cron!r}")
    schedule = Schedule(name, cron, job, dict(payload or {}), misfire_grace)
    _schedules[name] = schedule
    return schedule


def schedule_source(source: ScheduleSource) -> ScheduleSource:
    """Register ``source(app)``, asked for its schedules on every tick (e.g. from metadata)."""
    _sources.append(source)
    return source


def schedules(app: Flask) -> list[Schedule]:
    """Every schedule now: the declared ones, then each source's."""
    found = list(_schedules.values())
    for source in _sources:
        try:
            found.extend(source(app))
        except Exception:  # one broken source must not stop every other schedule
            log.exception("schedule source %r failed", source)
    return found


_ENQUEUED_KEY = "trellis.jobs.slots_enqueued"


def tick(app: Flask, now: dt.datetime | None = None) -> list[int]:
    """Enqueue the job of each schedule's latest slot unless it is already there (or the
    slot is older than its grace); the ids of the jobs this tick created.
    """
    now = now or utcnow()
    created: list[int] = []
    # The slot each schedule last had on the table, as this process knows: ticked every
    # poll, a schedule writes (a transaction, SQLite's write lock) once per slot, not per tick.
    enqueued: dict[str, dt.datetime] = app.extensions.setdefault(_ENQUEUED_KEY, {})
    for schedule in schedules(app):
        slot = schedule.latest_slot(now)
        if (now - slot).total_seconds() > schedule.misfire_grace or enqueued.get(
            schedule.name
        ) == slot:
            continue
        try:
            job_id = _enqueue_slot(app, schedule, slot)
        except Exception:
            log.exception("schedule %s: slot %s not enqueued", schedule.name, slot)
            continue
        enqueued[schedule.name] = slot  # created here or by another process: it is there
        if job_id is not None:
            created.append(job_id)
    return created


def _enqueue_slot(app: Flask, schedule: Schedule, slot: dt.datetime) -> int | None:
    """The slot's job in a transaction of its own; its id if this call created it."""
    with database_of(app).write_session() as session:
        job, created = enqueue_once(session, schedule.job, schedule.payload, key=schedule.key(slot))
        session.commit()
    return job.id if created else None

"""Scheduled automations: cron schedules and triggers relative to a date field.

- A ``schedule`` automation runs on each slot of its cron expression (UTC) over the live
  records its ``condition`` selects (every record without one).
- A ``date`` automation runs once per record and date: ``offset_days`` from the date in
  its field (``-3``: three days before). The scheduler looks for due records every
  minute (``due_date_runs``) and enqueues one job per record and date with the key
  ``auto:<name>:<record id>:<date>``, so several schedulers racing enqueue it once; a
  due day missed while no scheduler ran is caught up for ``AUTOMATION_DATE_CATCH_UP_DAYS``.

Either way each record's run is ``run_on_record``: its actions in a savepoint, as the
system, and a run row with the run's key. The key is unique in ``automation_runs`` too,
so even two workers running the same job at once leave one run and one effect: the
second one's commit fails, and all it did rolls back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from trellis import defaults
from trellis.exceptions import NotFound
from trellis.platform.metadata.automations import (
    Automation,
    TriggerKind,
    due_date,
    field_date_window,
)
from trellis.platform.runtime.automations import engine
from trellis.platform.runtime.automations.actions import system_records
from trellis.platform.runtime.models import AutomationRun
from trellis.platform.runtime.records import serialise

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.registry import MetaRegistry

_BATCH = 500  # records read per query while a schedule walks its object


@dataclass(frozen=True)
class DueRun:
    """One record due for a date automation: what the scheduler enqueues."""

    automation: str
    record_id: int
    date: dt.date

    @property
    def key(self) -> str:
        """The run's key: the same for every scheduler that finds it."""
        return run_key(self.automation, self.record_id, self.date.isoformat())


def run_key(name: str, record_id: int, when: str) -> str:
    """``auto:<name>:<record id>:<date or slot>``: at most one run per key, ever."""
    return f"auto:{name}:{record_id}:{when}"


def _active(registry: MetaRegistry, kind: TriggerKind) -> list[Automation]:
    return [a for a in registry.automations() if a.active and a.kind is kind]


def cron_automations(registry: MetaRegistry) -> list[Automation]:
    """The active automations with a cron schedule."""
    return _active(registry, TriggerKind.SCHEDULE)


def due_date_runs(session: Session, registry: MetaRegistry, today: dt.date) -> list[DueRun]:
    """Every (date automation, record, date) due today or in the catch-up days before,
    whose condition holds and which has not run yet."""
    due: list[DueRun] = []
    for automation in _active(registry, TriggerKind.DATE):
        meta = registry.get(automation.object_name)
        field = automation.trigger["field"]
        offset = int(automation.trigger["offset_days"])
        first, last = field_date_window(today, offset, defaults.AUTOMATION_DATE_CATCH_UP_DAYS)
        column = meta.table.c[field]
        if meta.fields[field].type.name == "datetime":
            column = sa.func.date(column)
        rows = session.execute(
            sa.select(meta.table)
            .where(meta.table.c.deleted_at.is_(None), column.between(first, last))
            .order_by(meta.table.c.id)
        ).mappings()
        for row in rows:
            if not _condition_holds(session, registry, automation, serialise(meta, row)):
                continue
            value = row[field]
            day = value.date() if isinstance(value, dt.datetime) else value
            due.append(DueRun(automation.name, int(row["id"]), due_date(day, offset)))
    if not due:
        return []
    done = set(
        session.scalars(
            sa.select(AutomationRun.run_key).where(AutomationRun.run_key.in_([d.key for d in due]))
        )
    )
    return [d for d in due if d.key not in done]


def _condition_holds(
    session: Session, registry: MetaRegistry, automation: Automation, record: dict[str, Any]
) -> bool:
    if automation.condition is None:
        return True
    meta = registry.get(automation.object_name)
    unit = system_records(session, registry).unit
    return engine.evaluate(registry, meta, automation.condition, record, unit) is True


def run_on_record(
    session: Session,
    registry: MetaRegistry,
    name: str,
    record_id: int,
    key: str,
    *,
    due: dt.date | None = None,
) -> str | None:
    """Run a scheduled automation on one record, once per ``key``: its outcome, or
    ``None`` when there was nothing to do (already run, gone, no longer due or matching).

    ``due``: the day a date automation's run was found due for; the record's date may
    have moved since, and then this run is not due any more (the new date has its own key).
    """
    automation = next((a for a in registry.automations() if a.name == name), None)
    if automation is None or not automation.active:
        return None
    if session.scalar(sa.select(AutomationRun.id).where(AutomationRun.run_key == key)):
        return None
    try:
        record = system_records(session, registry).get(
            automation.object_name, record_id, include_children=False
        )
    except NotFound:
        return None
    if due is not None and _due_day(automation, record) != due:
        return None
    if not _condition_holds(session, registry, automation, record):
        return None
    return engine.run_actions(
        session,
        registry,
        automation,
        automation.actions,
        record_id,
        record,
        automation.kind.value,
        run_key=key,
    )


def _due_day(automation: Automation, record: dict[str, Any]) -> dt.date | None:
    value = record.get(automation.trigger["field"])
    if not value:
        return None
    day = dt.date.fromisoformat(str(value)[:10])
    return due_date(day, int(automation.trigger["offset_days"]))


def run_schedule(session: Session, registry: MetaRegistry, name: str, slot: str) -> dict[str, int]:
    """One slot of a cron automation over the records its condition selects; how many
    runs ended each way (a record already run for this slot is not run again)."""
    automation = next((a for a in cron_automations(registry) if a.name == name), None)
    counts: dict[str, int] = {}
    if automation is None:
        return counts
    for record_id in _record_ids(session, registry, automation):
        outcome = run_on_record(session, registry, name, record_id, run_key(name, record_id, slot))
        if outcome is not None:
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def _record_ids(session: Session, registry: MetaRegistry, automation: Automation) -> Iterator[int]:
    """The live records' ids, in batches (the condition is checked per record)."""
    table = registry.get(automation.object_name).table
    after = 0
    while True:
        ids = list(
            session.scalars(
                sa.select(table.c.id)
                .where(table.c.deleted_at.is_(None), table.c.id > after)
                .order_by(table.c.id)
                .limit(_BATCH)
            )
        )
        if not ids:
            return
        yield from ids
        after = ids[-1]


def slot_key(slot: dt.datetime) -> str:
    """A cron slot as run keys name it (``20261203T0200Z``)."""
    return f"{slot.astimezone(dt.UTC):%Y%m%dT%H%MZ}"

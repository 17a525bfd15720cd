"""Scheduled automations: date-relative triggers with time travel (each record and date
once, caught up after a gap, not re-run when the date moves), cron slots over the records
a condition selects, and two racing workers leaving one run and one effect."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import Api
from tests.factories import definition, field
from tests.platform.runtime.helpers import create, define, fetch
from trellis.extensions import Database
from trellis.platform.runtime.automations import schedule
from trellis.platform.runtime.models import AutomationRun

TODAY = dt.date(2026, 12, 3)


def delivery() -> dict[str, Any]:
    return definition(
        "delivery",
        {
            "title": field("text", "Title"),
            "due_on": field("date", "Due on"),
            "reminders": field("integer", "Reminders"),
            "active": field("boolean", "Active"),
            "ends_on": field("date", "Ends on"),
        },
    )


def note() -> dict[str, Any]:
    return definition("note", {"text": field("text", "Text")})


REMIND = {
    "x-name": "remind",
    "x-label": {"en": "Remind 3 days before", "zh-CN": "提前三天提醒"},
    "object": "delivery",
    "trigger": {"on": "date", "field": "due_on", "offset_days": -3},
    "condition": "active",
    "actions": [
        {"type": "create_record", "object": "note",
         "values": {"text": {"expression": "CONCAT('remind ', title)"}}},
    ],
}  # fmt: skip


@pytest.fixture
def objects(api: Api) -> Api:
    define(api, delivery())
    define(api, note())
    return api


def notes(api: Api) -> list[str]:
    return sorted(n["text"] for n in api.get("/records/note").get_json()["items"])


def scan_and_run(app: Flask, database: Database, today: dt.date) -> list[str | None]:
    """What one scheduler tick and its jobs do: find the due runs, run each once."""
    registry = app.extensions["trellis.registry"]
    outcomes = []
    with database.session() as session:
        registry.ensure_current(session)
        for due in schedule.due_date_runs(session, registry, today):
            outcomes.append(
                schedule.run_on_record(
                    session, registry, due.automation, due.record_id, due.key, due=due.date
                )
            )
        session.commit()
    return outcomes


def test_date_trigger_fires_once_per_record_and_date(
    app: Flask, database: Database, objects: Api
) -> None:
    assert objects.post("/automations", REMIND).status_code == 201
    soon = create(objects, "delivery", {"title": "soon", "due_on": "2026-12-10", "active": True})
    create(objects, "delivery", {"title": "off", "due_on": "2026-12-10", "active": False})
    create(objects, "delivery", {"title": "later", "due_on": "2026-12-20", "active": True})
    assert scan_and_run(app, database, TODAY) == []  # nothing due 3 days out yet
    assert scan_and_run(app, database, dt.date(2026, 12, 7)) == ["done"]
    assert scan_and_run(app, database, dt.date(2026, 12, 7)) == []  # the same day again
    assert scan_and_run(app, database, dt.date(2026, 12, 8)) == []  # the day after: caught up
    assert notes(objects) == ["remind soon"]
    # The date moves: a new date is a new run.
    current = fetch(objects, "delivery", soon["id"])
    moved = {"due_on": "2026-12-15", "version": current["version"]}
    assert objects.patch(f"/records/delivery/{soon['id']}", moved).status_code == 200
    assert scan_and_run(app, database, dt.date(2026, 12, 12)) == ["done"]
    assert notes(objects) == ["remind soon", "remind soon"]
    # A scheduler that was down for days catches up within the window.
    assert scan_and_run(app, database, dt.date(2026, 12, 22)) == ["done"]  # "later", due 17th
    assert notes(objects) == ["remind later", "remind soon", "remind soon"]


def test_a_stale_due_run_does_nothing(app: Flask, database: Database, objects: Api) -> None:
    assert objects.post("/automations", REMIND).status_code == 201
    record = create(objects, "delivery", {"title": "x", "due_on": "2026-12-10", "active": True})
    registry = app.extensions["trellis.registry"]
    with database.session() as session:
        registry.ensure_current(session)
        (due,) = schedule.due_date_runs(session, registry, dt.date(2026, 12, 7))
    current = fetch(objects, "delivery", record["id"])
    body = {"due_on": "2026-12-30", "version": current["version"]}
    assert objects.patch(f"/records/delivery/{record['id']}", body).status_code == 200
    with database.session() as session:
        registry.ensure_current(session)
        outcome = schedule.run_on_record(
            session, registry, due.automation, due.record_id, due.key, due=due.date
        )
        session.commit()
    assert outcome is None
    assert notes(objects) == []


def test_two_racing_workers_run_a_key_once(app: Flask, database: Database, objects: Api) -> None:
    assert objects.post("/automations", REMIND).status_code == 201
    create(objects, "delivery", {"title": "race", "due_on": "2026-12-10", "active": True})
    registry = app.extensions["trellis.registry"]
    with database.session() as session:
        registry.ensure_current(session)
        (due,) = schedule.due_date_runs(session, registry, dt.date(2026, 12, 7))
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def worker() -> None:
        with database.session() as session:
            barrier.wait(timeout=30)
            try:
                session.connection(execution_options={"trellis_write": True})
                outcome = schedule.run_on_record(
                    session, registry, due.automation, due.record_id, due.key, due=due.date
                )
                session.commit()
                outcomes.append(str(outcome))
            except sa.exc.IntegrityError:  # the other worker's run holds the key
                session.rollback()
                outcomes.append("lost")

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) in (["None", "done"], ["done", "lost"])
    assert notes(objects) == ["remind race"]
    with database.session() as session:
        keys = session.scalars(sa.select(AutomationRun.run_key)).all()
    assert keys == [due.key]


def test_cron_slot_runs_each_selected_record_once(
    app: Flask, database: Database, objects: Api
) -> None:
    nightly = {
        "x-name": "deactivate_ended",
        "x-label": {"en": "Deactivate ended contracts", "zh-CN": "停用到期合同"},
        "object": "delivery",
        "trigger": {"on": "schedule", "cron": "0 2 * * *"},
        "condition": "active AND ends_on < TODAY()",
        "actions": [{"type": "set_fields", "values": {"active": False}}],
    }
    assert objects.post("/automations", nightly).status_code == 201
    past = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    future = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    ended = create(objects, "delivery", {"title": "ended", "ends_on": past, "active": True})
    running = create(objects, "delivery", {"title": "on", "ends_on": future, "active": True})
    registry = app.extensions["trellis.registry"]
    slot = schedule.slot_key(dt.datetime(2026, 12, 3, 2, 0, tzinfo=dt.UTC))
    for _attempt in range(2):  # the same slot twice (a retried job): one run per record
        with database.session() as session:
            registry.ensure_current(session)
            counts = schedule.run_schedule(session, registry, "deactivate_ended", slot)
            session.commit()
        assert counts == ({"done": 1} if _attempt == 0 else {})
    assert fetch(objects, "delivery", ended["id"])["active"] is False
    assert fetch(objects, "delivery", running["id"])["active"] is True
    runs = objects.get("/automations/deactivate_ended/runs").get_json()["items"]
    assert [(r["record_id"], r["outcome"], r["trigger"]) for r in runs] == [
        (ended["id"], "done", "schedule")
    ]


# --- through the jobs runtime: the scheduler's ticks, its jobs, racing schedulers ---------


def tick(app: Flask, moment: dt.datetime) -> None:
    from trellis.platform.runtime.jobs import scheduler

    scheduler.tick(app, now=moment)


def test_scheduler_ticks_run_date_automations_once(
    app: Flask, database: Database, objects: Api
) -> None:
    assert objects.post("/automations", REMIND).status_code == 201
    create(objects, "delivery", {"title": "tick", "due_on": "2026-12-10", "active": True})
    tick(app, dt.datetime(2026, 12, 6, 9, 0, tzinfo=dt.UTC))  # 4 days before: not yet
    assert notes(objects) == []
    moment = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
    barrier = threading.Barrier(2)

    def scheduler() -> None:  # two schedulers ticking the same minute at once
        barrier.wait(timeout=30)
        tick(app, moment)

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    tick(app, moment + dt.timedelta(minutes=1))  # the next minute finds it done
    tick(app, moment + dt.timedelta(days=1))  # and so does the next day
    assert notes(objects) == ["remind tick"]
    with database.session() as session:
        keys = session.scalars(sa.select(AutomationRun.run_key)).all()
    assert len(keys) == 1 and keys[0].endswith(":2026-12-07")


def test_scheduler_runs_cron_automations_per_slot(
    app: Flask, database: Database, objects: Api
) -> None:
    nightly = {
        "x-name": "nightly_note",
        "x-label": {"en": "Nightly note", "zh-CN": "每晚记录"},
        "object": "delivery",
        "trigger": {"on": "schedule", "cron": "0 2 * * *"},
        "condition": "active",
        "actions": [{"type": "create_record", "object": "note",
                     "values": {"text": {"expression": "CONCAT('night ', title)"}}}],
    }  # fmt: skip
    assert objects.post("/automations", nightly).status_code == 201
    create(objects, "delivery", {"title": "a", "active": True})
    create(objects, "delivery", {"title": "b", "active": False})
    two = dt.datetime(2026, 12, 3, 2, 0, 30, tzinfo=dt.UTC)
    tick(app, two)
    tick(app, two + dt.timedelta(seconds=20))  # the same slot
    assert notes(objects) == ["night a"]
    tick(app, two + dt.timedelta(days=1))  # the next night
    assert notes(objects) == ["night a", "night a"]

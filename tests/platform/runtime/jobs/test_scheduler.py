"""Cron schedules with time travel: the scheduler's ``tick`` is given the moment it runs
at. Two schedulers racing on the same moments (threads, each with its own transactions)
enqueue each slot exactly once, and each slot's job runs once. SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.platform.runtime.jobs import sample_jobs
from tests.platform.runtime.jobs.helpers import create_effects_table, effect_keys
from trellis.extensions import Database
from trellis.platform.runtime import jobs
from trellis.platform.runtime.jobs import scheduler
from trellis.platform.runtime.models import Job

del sample_jobs  # imported for the jobs it registers

DAY = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)


@pytest.fixture
def nightly(database: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[jobs.Schedule]:
    """The test's schedule, alone: the platform's own schedules and sources (the
    automations' date scan, cron automations) are set aside while it runs."""
    create_effects_table(database)
    monkeypatch.setattr(scheduler, "_schedules", {})
    monkeypatch.setattr(scheduler, "_sources", [])
    schedule = jobs.periodic("tests.nightly", cron="0 2 * * *", job="tests.cron_effect")
    yield schedule


def cron_keys(database: Database) -> list[str]:
    with database.engine.connect() as connection:
        query = sa.select(Job.key).where(Job.key.like("cron:%")).order_by(Job.key)
        return [str(key) for key in connection.execute(query).scalars()]


def test_a_slot_is_enqueued_once_and_late_slots_are_caught_up_within_grace(
    app: Flask, database: Database, nightly: jobs.Schedule
) -> None:
    at = DAY.replace(hour=2)
    assert len(scheduler.tick(app, at + dt.timedelta(seconds=1))) == 1
    assert scheduler.tick(app, at + dt.timedelta(minutes=59)) == []  # the same slot
    # The next night the scheduler wakes 2 h late: beyond the grace of one hour, skipped.
    assert scheduler.tick(app, at + dt.timedelta(days=1, hours=2)) == []
    # The night after, 30 minutes late: caught up once.
    assert len(scheduler.tick(app, at + dt.timedelta(days=2, minutes=30))) == 1
    assert cron_keys(database) == [
        "cron:tests.nightly:20261203T020000Z",
        "cron:tests.nightly:20261205T020000Z",
    ]
    assert effect_keys(database) == cron_keys(database)  # each ran once, after its commit


def test_a_process_writes_once_per_slot_not_once_per_tick(
    app: Flask, database: Database, nightly: jobs.Schedule
) -> None:
    """A worker ticks every poll: once its slot is on the table, the ticks that follow in
    the same slot send no statement (on SQLite each would take the write lock)."""
    at = DAY.replace(hour=2)
    assert len(scheduler.tick(app, at + dt.timedelta(seconds=1))) == 1
    statements: list[str] = []

    def seen(*args: object) -> None:
        statements.append(str(args[2]))

    sa.event.listen(database.engine, "before_cursor_execute", seen)
    try:
        for second in range(2, 30):
            assert scheduler.tick(app, at + dt.timedelta(seconds=second)) == []
    finally:
        sa.event.remove(database.engine, "before_cursor_execute", seen)
    assert statements == []
    assert len(scheduler.tick(app, at + dt.timedelta(days=1, seconds=1))) == 1  # the next slot


def test_two_racing_schedulers_enqueue_and_run_each_slot_exactly_once(
    app: Flask, database: Database, nightly: jobs.Schedule
) -> None:
    moments = [DAY.replace(hour=2) + dt.timedelta(days=n, seconds=5) for n in range(5)]
    created: list[list[int]] = [[], []]
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            for moment in moments:
                start.wait(timeout=30)
                created[index].extend(scheduler.tick(app, moment))
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures
    assert sorted(created[0] + created[1]) == sorted(set(created[0] + created[1]))
    assert len(created[0]) + len(created[1]) == len(moments)
    assert len(cron_keys(database)) == len(moments)
    assert effect_keys(database) == cron_keys(database)
    with database.session() as session:
        statuses = session.scalars(sa.select(Job.status).where(Job.key.like("cron:%")))
        assert set(statuses) == {"done"}


def test_a_schedule_needs_a_cron_expression() -> None:
    with pytest.raises(ValueError, match="not a cron expression"):
        jobs.periodic("tests.bad", cron="every night", job="tests.cron_effect")

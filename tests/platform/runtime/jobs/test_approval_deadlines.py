"""Approval deadlines on the scheduler: ``approvals.deadlines`` enqueues
``approvals.run_deadlines`` every minute, which acts as of its slot. Two schedulers racing
on the same moments (threads, each with its own transactions, time travelling past the
deadline) escalate the task exactly once; the embedded mode's thread (no Redis) runs the
schedule by itself. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import Api
from tests.platform.runtime.test_approvals import (
    new_expense,
    put_flow,
    state,
    step,
    submit,
)
from trellis.extensions import Database
from trellis.platform.runtime.jobs import embedded, scheduler
from trellis.platform.runtime.models import Job
from trellis.platform.runtime.workflow import deadlines

pytest_plugins = ["tests.platform.runtime.test_approvals"]  # its `people` fixture


@pytest.fixture
def only_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    """The approvals' schedule alone (the automations' are set aside while a test runs)."""
    schedule = scheduler._schedules[deadlines.SCHEDULE]
    monkeypatch.setattr(scheduler, "_schedules", {deadlines.SCHEDULE: schedule})
    monkeypatch.setattr(scheduler, "_sources", [])


def escalating(people: dict[str, Api]) -> tuple[int, dt.datetime]:
    """A request whose manager step escalates to the board after 2 hours; its task's due."""
    deadline = {"hours": 2, "action": "escalate", "to": {"role": "board"}}
    put_flow(people["admin"], [step("manager", [{"manager": 1}], deadline=deadline)])
    record = new_expense(people["sam"])
    assert submit(people["sam"], record).status_code == 201
    due = state(people["sam"], record)["tasks"][0]["due_at"]
    return record, dt.datetime.fromisoformat(due.replace("Z", "+00:00"))


def deadline_jobs(database: Database) -> list[tuple[str, str]]:
    with database.engine.connect() as connection:
        rows = connection.execute(
            sa.select(Job.key, Job.status).where(Job.name == deadlines.JOB).order_by(Job.key)
        )
        return [(str(key), str(status)) for key, status in rows]


def test_two_racing_schedulers_escalate_a_deadline_once(
    app: Flask, database: Database, people: dict[str, Api], only_deadlines: None
) -> None:
    record, due = escalating(people)
    ids: dict[str, int] = people["ids"]  # type: ignore[assignment]
    # Minutes before, at and after the deadline (the slot of `due` is the minute it is in).
    moments = [due + dt.timedelta(minutes=n, seconds=1) for n in (-2, -1, 1, 2, 3)]
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            for moment in moments:
                start.wait(timeout=30)
                scheduler.tick(app, moment)  # enqueues the slot's job and, no Redis, runs it
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures
    found = deadline_jobs(database)
    assert len(found) == len(moments) and {s for _k, s in found} == {"done"}
    after = state(people["sam"], record)
    assert [h["action"] for h in after["history"]].count("escalated") == 1
    assert after["tasks"][0]["approver"]["id"] == ids["b1"]
    assert after["tasks"][0]["on_behalf_of"]["id"] == ids["boss"]
    assert people["b1"].get("/approvals/inbox").get_json()["count"] == 1
    assert people["boss"].get("/approvals/inbox").get_json()["count"] == 0


def test_the_embedded_thread_runs_the_schedule_without_a_worker(
    app: Flask, database: Database, people: dict[str, Api], only_deadlines: None
) -> None:
    record, due = escalating(people)
    # One tick of the embedded loop, time travelled past the deadline.
    embedded.run_once(app, due + dt.timedelta(minutes=1))
    assert [h["action"] for h in state(people["sam"], record)["history"]].count("escalated") == 1
    # The thread itself, on the real clock: it enqueues this minute's slot and runs it.
    thread = embedded.start(app, every=0.05)
    assert thread is not None and embedded.start(app) is thread  # one per process
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if any(status == "done" for _k, status in deadline_jobs(database)[1:]):
                break
            time.sleep(0.05)
    finally:
        embedded.stop(app)
    assert len(deadline_jobs(database)) >= 2
    assert all(status == "done" for _k, status in deadline_jobs(database))


def test_no_embedded_thread_with_redis(app: Flask) -> None:
    app.config["REDIS_URL"] = "redis://127.0.0.1:6379/15"
    try:
        assert embedded.start(app) is None
    finally:
        app.config["REDIS_URL"] = None

"""Jobs and the outbox without Redis: run in the web process once the transaction commits.

SQLite and PostgreSQL. Retries use a back-off base of 0 seconds, so a job that fails is
due again at once and the same after-commit run takes it up; nothing here sleeps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.conftest import Api
from tests.platform.runtime.helpers import error_of
from tests.platform.runtime.jobs import sample_jobs
from tests.platform.runtime.jobs.helpers import (
    api_as,
    create_effects_table,
    effect_keys,
    jobs_listed,
    plain_user,
    stored_job,
)
from trellis.extensions import Database
from trellis.platform.runtime import jobs
from trellis.platform.runtime.models import AuditEvent, OutboxEntry

del sample_jobs  # imported for the jobs it registers


@pytest.fixture(autouse=True)
def _no_backoff(app: Flask, database: Database) -> None:
    app.config["RETRY_BASE_SECONDS"] = 0
    create_effects_table(database)


def enqueue(database: Database, name: str, payload: dict[str, Any], **kwargs: Any) -> int:
    with database.session() as session:
        job = jobs.enqueue(session, name, payload, **kwargs)
        session.commit()
        return job.id


def test_a_job_runs_after_its_transaction_commits(database: Database) -> None:
    with database.session() as session:
        job = jobs.enqueue(session, "tests.effect", {"key": "a"})
        assert effect_keys(database) == []  # nothing before the commit
        session.commit()
    done = stored_job(database, job.id)
    assert (done.status, done.attempts, done.result) == ("done", 1, {"key": "a", "attempt": 1})
    assert effect_keys(database) == ["a"]


def test_a_rolled_back_enqueue_leaves_no_job(database: Database) -> None:
    with database.session() as session:
        job_id = jobs.enqueue(session, "tests.effect", {"key": "never"}).id
        session.rollback()
    with database.session() as session:
        assert session.get(jobs.Job, job_id) is None
    assert effect_keys(database) == []


def test_a_key_makes_enqueueing_idempotent(database: Database) -> None:
    first = enqueue(database, "tests.effect", {"key": "once"}, key="import:1")
    again = enqueue(database, "tests.effect", {"key": "once"}, key="import:1")
    with database.session() as session:
        twice = [jobs.enqueue(session, "tests.effect", {"key": "x"}, key="k").id for _ in range(2)]
        session.commit()
    assert first == again
    assert twice[0] == twice[1]
    assert effect_keys(database) == ["once", "x"]


def test_a_failing_job_is_retried_then_done(database: Database) -> None:
    job_id = enqueue(database, "tests.effect", {"key": "late", "fail_times": 2})
    job = stored_job(database, job_id)
    assert (job.status, job.attempts, job.error) == ("done", 3, None)
    assert effect_keys(database) == ["late"]  # the failed attempts left nothing


def test_a_job_that_keeps_failing_is_failed_with_its_error(database: Database) -> None:
    job_id = enqueue(database, "tests.effect", {"key": "never", "fail_times": 9})
    job = stored_job(database, job_id)
    assert (job.status, job.attempts) == ("failed", 3)
    assert "failing attempt 3 on purpose" in (job.error or "")
    assert job.finished_at is not None
    assert effect_keys(database) == []


def test_the_back_off_doubles_with_jitter() -> None:
    from trellis.platform.runtime.jobs.definitions import backoff_seconds

    for attempt, full in [(1, 10), (2, 20), (3, 40), (30, 3600)]:
        delays = [backoff_seconds(attempt, 10) for _ in range(50)]
        assert all(full / 2 <= delay <= full for delay in delays)
        assert len(set(delays)) > 1


def test_unknown_jobs_and_payloads_that_are_not_json_are_refused(database: Database) -> None:
    with database.session() as session:
        with pytest.raises(jobs.UnknownJob):
            jobs.enqueue(session, "tests.nothing", {})
        with pytest.raises(TypeError):
            jobs.enqueue(session, "tests.effect", {"key": {1, 2}})


def test_progress_is_kept_with_the_outcome(database: Database, tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.write_text("go")
    job_id = enqueue(
        database,
        "tests.slow_effect",
        {"key": "p", "started": str(tmp_path / "started"), "release": str(release)},
    )
    job = stored_job(database, job_id)
    assert (job.status, job.progress_done, job.progress_total) == ("done", 1, 2)
    assert job.progress_message == "effect written, waiting"


def test_an_outbox_event_is_delivered_after_commit_with_a_stable_id(
    database: Database, tmp_path: Path
) -> None:
    received = tmp_path / "received.txt"
    with database.session() as session:
        event_id = jobs.outbox.emit(session, "tests.file", {"path": str(received)})
        session.commit()
    assert received.read_text().split() == [event_id]
    with database.session() as session:
        entry = session.query(OutboxEntry).filter_by(event_id=event_id).one()
        assert (entry.status, entry.attempts) == ("delivered", 1)


def test_an_undeliverable_event_is_retried_then_failed(app: Flask, database: Database) -> None:
    app.config["OUTBOX_MAX_ATTEMPTS"] = 2
    with database.session() as session:
        event_id = jobs.outbox.emit(session, "tests.nobody", {})
        session.commit()
    jobs.outbox.relay_due(app)  # the second attempt (no back-off here)
    with database.session() as session:
        entry = session.query(OutboxEntry).filter_by(event_id=event_id).one()
        assert (entry.status, entry.attempts) == ("failed", 2)
        assert "no deliverer" in (entry.last_error or "")
        assert jobs.outbox.retry_failed(session, event_id)
        session.commit()


def outbox_entries(database: Database) -> dict[str, OutboxEntry]:
    with database.session() as session:
        entries = session.query(OutboxEntry).all()
        session.expunge_all()
    return {entry.payload["key"]: entry for entry in entries}


def test_a_batch_keeps_each_deliverers_writes_apart(app: Flask, database: Database) -> None:
    """Three events, one batch, one session: the one that raises loses its writes alone;
    the one that reports a failure it logged keeps them; the good one is delivered with
    the batch's commit."""
    app.config["RETRY_BASE_SECONDS"] = 600  # one attempt each here
    with database.session() as session:
        for key, fail in (("good", None), ("broken", "raise"), ("told", "told")):
            jobs.outbox.emit(session, "tests.effect", {"key": key, "fail": fail})
        session.commit()  # relayed in-process after the commit, as one batch
    assert effect_keys(database) == ["good", "told"]
    entries = outbox_entries(database)
    assert {key: (e.status, e.attempts) for key, e in entries.items()} == {
        "good": ("delivered", 1),
        "broken": ("pending", 1),
        "told": ("pending", 1),
    }
    assert "the receiver broke" in (entries["broken"].last_error or "")
    assert entries["told"].last_error == "the receiver said no (logged)"
    assert entries["good"].last_error is None and entries["good"].delivered_at is not None


def test_a_batch_past_half_its_lease_hands_back_what_it_has_not_tried(
    app: Flask, database: Database
) -> None:
    """A slow batch stops at half its lease; the events it did not try are due again at
    once, their claim not counted as an attempt, so no other relay redelivers one that
    this relay is still busy with."""
    app.config["JOB_LEASE_SECONDS"] = 0.4
    app.extensions["trellis.jobs.polling"] = True  # no relay after the commit: this test's
    try:
        with database.session() as session:
            for key in ("first", "second", "third"):
                jobs.outbox.emit(session, "tests.effect", {"key": key, "sleep": 0.3})
            session.commit()
        assert jobs.outbox.relay_due(app, limit=3) == 1
        entries = outbox_entries(database)
        assert {key: (e.status, e.attempts) for key, e in entries.items()} == {
            "first": ("delivered", 1),
            "second": ("pending", 0),
            "third": ("pending", 0),
        }
        assert effect_keys(database) == ["first"]
        assert jobs.outbox.relay_due(app, limit=1) == 1  # due again at once
        assert effect_keys(database) == ["first", "second"]
    finally:
        app.extensions.pop("trellis.jobs.polling")


def test_an_event_rolled_back_with_its_change_is_never_sent(
    database: Database, tmp_path: Path
) -> None:
    received = tmp_path / "received.txt"
    with database.session() as session:
        jobs.outbox.emit(session, "tests.file", {"path": str(received)})
        session.rollback()
    assert not received.exists()


# --- the API ------------------------------------------------------------------------------


def test_admins_list_and_read_jobs_with_their_progress(api: Api, database: Database) -> None:
    job_id = enqueue(database, "tests.effect", {"key": "listed"})
    items = jobs_listed(api)
    assert [item["id"] for item in items] == [job_id]
    one = api.get(f"/jobs/{job_id}").get_json()
    assert one["status"] == "done"
    assert one["progress"] == {"done": None, "total": None, "message": ""}
    assert one["result"] == {"key": "listed", "attempt": 1}
    assert jobs_listed(api, status="failed") == []
    error_of(api.get("/jobs", query_string={"status": "nope"}), 400)
    error_of(api.get("/jobs/999999"), 404, "not_found")


def test_a_failed_job_is_retried_by_an_admin(api: Api, database: Database, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    job_id = enqueue(database, "tests.effect", {"key": "r", "blocker": str(blocker)})
    assert [item["id"] for item in jobs_listed(api, status="failed")] == [job_id]
    blocker.unlink()
    response = api.post(f"/jobs/{job_id}/retry")
    assert response.status_code == 200, response.get_json()
    # The retry's first attempt runs after the commit, and now succeeds.
    assert (response.get_json()["status"], response.get_json()["attempts"]) == ("done", 1)
    assert effect_keys(database) == ["r"]
    error_of(api.post(f"/jobs/{job_id}/retry"), 409, "not_retryable")
    with database.session() as session:
        events = session.query(AuditEvent).filter_by(action="job.retried").all()
        assert [event.target for event in events] == [f"job/{job_id}"]


def test_others_see_only_their_own_jobs_and_cannot_retry(api: Api, database: Database) -> None:
    clerk_id, token = plain_user(database)
    clerk = api_as(api, token)
    theirs = enqueue(database, "tests.effect", {"key": "c", "fail_times": 9}, created_by=clerk_id)
    other = enqueue(database, "tests.effect", {"key": "o"})
    assert [item["id"] for item in jobs_listed(clerk)] == [theirs]
    assert clerk.get(f"/jobs/{theirs}").status_code == 200
    error_of(clerk.get(f"/jobs/{other}"), 404)
    error_of(clerk.post(f"/jobs/{theirs}/retry"), 403, "forbidden")
    assert {item["id"] for item in jobs_listed(api)} == {theirs, other}

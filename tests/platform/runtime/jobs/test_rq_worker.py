"""Jobs on real RQ workers (``trellis worker`` subprocesses) and a real ``redis-server``.

SQLite and PostgreSQL. The workers hold a job for 2 s without news before another may
take it over (``TRELLIS_JOB_LEASE_SECONDS``), so a killed worker's job comes back quickly;
each test waits for an outcome with a generous bound, never for a set time.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from rq import Queue
from rq import Worker as RqWorker

from tests.conftest import Api
from tests.factories import definition, field
from tests.platform.runtime.helpers import create, define
from tests.platform.runtime.jobs import sample_jobs
from tests.platform.runtime.jobs.conftest import RedisServer, WorkerProcess, wait_for
from tests.platform.runtime.jobs.helpers import create_effects_table, effect_keys, stored_job
from trellis.extensions import Database
from trellis.platform.runtime import jobs
from trellis.platform.runtime.models import Job, OutboxEntry
from trellis.platform.runtime.records.hooks import Hook, WriteEvent, hooks

del sample_jobs  # imported for the jobs it registers


@pytest.fixture(autouse=True)
def _on_redis(app: Flask, database: Database, redis_server: RedisServer) -> None:
    app.config["REDIS_URL"] = redis_server.url
    create_effects_table(database)


def enqueue(database: Database, name: str, payload: dict[str, Any], **kwargs: Any) -> int:
    with database.session() as session:
        job = jobs.enqueue(session, name, payload, **kwargs)
        session.commit()
        return job.id


def status_of(database: Database, job_id: int) -> str:
    return stored_job(database, job_id).status


def test_jobs_go_on_rq_queues_and_a_worker_runs_them(
    database: Database, redis_server: RedisServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    ids = [enqueue(database, "tests.effect", {"key": f"k{n}"}) for n in range(3)]
    assert Queue("default", connection=redis.Redis.from_url(redis_server.url)).count == 3
    info = subprocess.run(
        ["rq", "info", "--raw", "-u", redis_server.url, "default"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "queue default 3" in info.stdout
    start_worker()
    wait_for(lambda: all(status_of(database, i) == "done" for i in ids), "the jobs to run")
    assert effect_keys(database) == ["k0", "k1", "k2"]


@pytest.fixture
def outbox_on_writes(tmp_path: Path) -> Iterator[Path]:
    """Every record write emits an outbox event in its transaction (as automations and
    webhooks will); the worker's relay appends each delivered event id to a file."""
    received = tmp_path / "received.txt"

    def emit(event: WriteEvent) -> None:
        payload = {"path": str(received), "record": event.record_id}
        jobs.outbox.emit(event.session, "tests.file", payload)

    hooks.register(Hook.AFTER_WRITE, emit, "note")
    yield received
    hooks.unregister(Hook.AFTER_WRITE, emit, "note")


def emitted_ids(database: Database) -> set[str]:
    with database.engine.connect() as connection:
        return set(connection.execute(sa.select(OutboxEntry.event_id)).scalars())


def received_ids(received: Path) -> list[str]:
    return received.read_text().split() if received.exists() else []


def test_an_outbox_event_survives_redis_being_stopped_mid_run(
    api: Api,
    database: Database,
    redis_server: RedisServer,
    start_worker: Callable[..., WorkerProcess],
    outbox_on_writes: Path,
) -> None:
    define(api, definition("note", {"title": field("text")}))
    start_worker()
    create(api, "note", {"title": "before"})
    wait_for(lambda: len(received_ids(outbox_on_writes)) == 1, "the first event")

    redis_server.stop()
    during = api.post("/records/note", {"title": "while Redis is down"})
    assert during.status_code == 201, during.get_json()
    job_id = enqueue(database, "tests.effect", {"key": "queued during the outage"})
    with database.session() as session:
        assert session.get_one(Job, job_id).pushed_at is None  # the push failed, quietly

    redis_server.start()  # empty: every RQ queue was lost with it
    create(api, "note", {"title": "after"})
    wait_for(lambda: set(received_ids(outbox_on_writes)) == emitted_ids(database), "every event")
    wait_for(lambda: status_of(database, job_id) == "done", "the job pushed again")
    assert len(emitted_ids(database)) == 3
    assert effect_keys(database) == ["queued during the outage"]
    with database.session() as session:
        statuses = set(session.scalars(sa.select(OutboxEntry.status)))
    assert statuses == {"delivered"}


def test_a_killed_workers_job_is_retried_without_double_effects(
    database: Database, tmp_path: Path, start_worker: Callable[..., WorkerProcess]
) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    payload = {"key": "once", "started": str(started), "release": str(release)}
    job_id = enqueue(database, "tests.slow_effect", payload, key="slow:1")
    first = start_worker()
    wait_for(started.exists, "the first attempt to write its effect")
    assert stored_job(database, job_id).status == "running"
    first.kill()  # mid-job: the effect is written but not committed

    start_worker()
    wait_for(lambda: status_of(database, job_id) == "done", "the job to be taken over")
    job = stored_job(database, job_id)
    assert job.attempts == 2
    assert effect_keys(database) == ["once"]  # one effect, from the second attempt
    with database.engine.connect() as connection:
        detail = connection.execute(sa.text("SELECT detail FROM job_effects")).scalar()
    assert detail == "attempt 2"
    # Enqueued again under its key, the job is the same one: it does not run again.
    assert enqueue(database, "tests.slow_effect", payload, key="slow:1") == job_id


def test_two_workers_run_each_cron_slot_exactly_once(
    database: Database, start_worker: Callable[..., WorkerProcess]
) -> None:
    workers = [start_worker(TEST_EVERY_SECOND="1") for _ in range(2)]

    def cron_jobs() -> list[Job]:
        with database.session() as session:
            # this test's schedule only (the platform's own, e.g. the automations' date
            # scan, tick in the same workers)
            query = sa.select(Job).where(Job.key.like("cron:tests.every_second:%"))
            return list(session.scalars(query))

    wait_for(lambda: len([j for j in cron_jobs() if j.status == "done"]) >= 4, "four slots")
    for worker in workers:
        worker.stop()
    slots = cron_jobs()
    keys = [job.key for job in slots]
    assert len(keys) == len(set(keys))
    assert {job.status for job in slots} <= {"done", "queued"}
    assert all(job.attempts <= 1 for job in slots)
    done = sorted(str(job.key) for job in slots if job.status == "done")
    assert effect_keys(database) == done


def test_after_redis_restarts_the_worker_registers_again_and_waits_for_jobs(
    database: Database, redis_server: RedisServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    """A Redis restarted without persistence forgets its workers: each registers again on
    its next heartbeat, so ``rq info`` sees it. Its blocking wait for jobs (BLMOVE, 405 s)
    must not read on a connection with redis-py's default 5 s timeout: it timed out every
    few seconds and backed off longer each time (a worker missing its jobs for up to a
    minute). 8 s after the restart the log holds no such timeout, and a job runs."""
    client = redis.Redis.from_url(redis_server.url)
    worker = start_worker()
    wait_for(lambda: len(RqWorker.all(connection=client)) == 1, "the worker to register")
    redis_server.stop()
    redis_server.start()
    wait_for(lambda: len(RqWorker.all(connection=client)) == 1, "the worker to register again")
    time.sleep(8)  # longer than redis-py's default read timeout: a wait for what must not come
    assert "Timeout reading from socket" not in worker.log.read_text(errors="replace")
    job_id = enqueue(database, "tests.effect", {"key": "after the restart"})
    wait_for(lambda: status_of(database, job_id) == "done", "the job")


def test_sigterm_stops_a_worker_while_redis_is_down(
    redis_server: RedisServer, start_worker: Callable[..., WorkerProcess]
) -> None:
    """A stop asked for during a Redis outage (a deploy, a reboot) is kept: RQ's loop ends
    on it but fails to record its death in Redis; the worker must not start that loop
    again as after any other Redis error."""
    client = redis.Redis.from_url(redis_server.url)
    worker = start_worker()
    wait_for(lambda: len(RqWorker.all(connection=client)) == 1, "the worker to register")
    redis_server.stop()
    wait_for(
        lambda: "Connection refused" in worker.log.read_text(errors="replace"),
        "the worker to see Redis gone",
    )
    worker.process.terminate()
    wait_for(lambda: worker.process.poll() is not None, "the worker to stop", timeout=60)

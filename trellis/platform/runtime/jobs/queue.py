"""Enqueueing jobs, and getting them to whoever runs them once the transaction commits.

``enqueue`` writes the ``jobs`` row in the caller's transaction: nothing runs if it rolls
back. After the commit the job is either pushed to RQ (``TRELLIS_REDIS_URL`` set; the RQ
job carries only the row's id) or, without Redis, run in this process straight away. A
push that fails (Redis down) never fails the caller's write: the row stays ``queued`` with
no ``pushed_at``, and the worker's sweeper pushes it once Redis answers again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from typing import TYPE_CHECKING, Any

import redis
import sqlalchemy as sa
from flask import current_app, g, has_app_context, has_request_context
from sqlalchemy.dialects import postgresql, sqlite

from trellis.extensions import database_of
from trellis.platform.runtime.jobs.definitions import definition
from trellis.platform.runtime.jobs.runner import JOBS, run_job
from trellis.platform.runtime.models import Job, JobStatus, utcnow
from trellis.platform.runtime.records.hooks import collect_until_commit

if TYPE_CHECKING:
    from flask import Flask
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

PERFORM = "trellis.platform.runtime.jobs.worker.perform"  # what each RQ job calls
IN_PROCESS_BATCH = 20  # due jobs run after one commit without Redis, at most
_PUSH_KEY = "trellis.jobs.to_push"
POLLING_KEY = "trellis.jobs.polling"  # app.extensions flag: this process is a worker
_draining = threading.local()


def enqueue(
    session: Session,
    name: str,
    payload: dict[str, Any] | None = None,
    *,
    key: str | None = None,
    run_at: dt.datetime | None = None,
    created_by: int | None = None,
) -> Job:
    """A ``jobs`` row for job ``name`` in the caller's transaction; it runs after commit.

    ``key`` makes this idempotent: a second enqueue with the same key (even from another
    transaction, even at the same moment) returns the job already there. ``created_by``
    defaults to the user of the current API request; they may then see the job.
    """
    return enqueue_once(session, name, payload, key=key, run_at=run_at, created_by=created_by)[0]


def enqueue_once(
    session: Session,
    name: str,
    payload: dict[str, Any] | None = None,
    *,
    key: str | None = None,
    run_at: dt.datetime | None = None,
    created_by: int | None = None,
) -> tuple[Job, bool]:
    """``enqueue``, also saying whether this call created the job (``False``: the key's)."""
    job_definition = definition(name)  # unknown names fail here, not in the worker
    payload = dict(payload or {})
    json.dumps(payload)  # the payload must be JSON: refuse anything else now
    if created_by is None and has_request_context() and g.get("caller") is not None:
        created_by = g.caller.user_id
    now = utcnow()
    values = {
        "name": name,
        "queue": job_definition.queue,
        "payload": payload,
        "key": key,
        "status": JobStatus.QUEUED.value,
        "attempts": 0,
        "max_attempts": job_definition.max_attempts,
        "run_at": run_at or now,
        "progress_message": "",
        "created_by": created_by,
        "created_at": now,
    }
    job_id = session.execute(_insert(session, values)).scalar()
    if job_id is None:  # the key was taken: that job is the answer
        return session.execute(sa.select(Job).where(Job.key == key)).scalar_one(), False
    after_commit_dispatch(session, job_id)
    return session.get_one(Job, job_id), True


def _insert(session: Session, values: dict[str, Any]) -> Any:
    """``INSERT … ON CONFLICT (key) DO NOTHING RETURNING id``: on PostgreSQL a concurrent
    insert of the same key waits for the other transaction, then does nothing."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (insert(JOBS).values(**values).on_conflict_do_nothing(index_elements=["key"])).returning(
        JOBS.c.id
    )


def after_commit_dispatch(session: Session, job_id: int) -> None:
    """Push (or run) job ``job_id`` once ``session`` commits; forgotten if it rolls back."""
    app = app_of(session)
    collect_until_commit(session, _PUSH_KEY, lambda ids: dispatch(app, ids)).append(job_id)


def app_of(session: Session) -> Flask:
    """The app whose database ``session`` is on (sessions carry it), else the current app."""
    app = session.info.get("trellis.app")
    if app is None and has_app_context():
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app is None:
        raise RuntimeError("a job was enqueued on a session that belongs to no app")
    return app


def dispatch(app: Flask, job_ids: list[int]) -> None:
    """After a commit: push the jobs to RQ, or run what is due here when there is no Redis
    (unless this process is a worker, whose own loop runs them)."""
    if uses_redis(app):
        for job_id in job_ids:
            push(app, job_id)
    elif not app.extensions.get(POLLING_KEY):
        run_due_here(app)


def uses_redis(app: Flask) -> bool:
    """Whether jobs go through RQ (``TRELLIS_REDIS_URL`` set) rather than run in-process."""
    return bool(app.config.get("REDIS_URL"))


def run_due_here(app: Flask, limit: int = IN_PROCESS_BATCH) -> int:
    """Run due queued jobs in this process (no Redis), oldest first; how many ran.

    A job that enqueues another, from inside this loop, does not start a second loop: the
    outer one picks the new job up next.
    """
    if getattr(_draining, "active", False):
        return 0
    _draining.active = True
    ran = 0
    try:
        while ran < limit:
            job_id = next_due(app)
            if job_id is None:
                break
            if run_job(app, job_id) is not None:
                ran += 1
    finally:
        _draining.active = False
    return ran


def next_due(app: Flask, queues: list[str] | None = None) -> int | None:
    """The id of the oldest queued job whose time has come (on ``queues``, if given)."""
    statement = (
        sa.select(JOBS.c.id)
        .where(JOBS.c.status == JobStatus.QUEUED, JOBS.c.run_at <= utcnow())
        .order_by(JOBS.c.run_at, JOBS.c.id)
        .limit(1)
    )
    if queues:
        statement = statement.where(JOBS.c.queue.in_(queues))
    with database_of(app).engine.connect() as connection:
        job_id: int | None = connection.execute(statement).scalar()
    return job_id


# --- RQ ----------------------------------------------------------------------------------


def redis_connection(app: Flask) -> redis.Redis:
    """The app's Redis client for pushing: short timeouts, so a Redis that is down costs a
    write a moment, not a hang (the worker makes its own, without a read timeout)."""
    client = app.extensions.get("trellis.jobs.redis")
    if client is None:
        client = redis.Redis.from_url(
            app.config["REDIS_URL"], socket_connect_timeout=1, socket_timeout=2
        )
        app.extensions["trellis.jobs.redis"] = client
    return client


def push(app: Flask, job_id: int, connection: redis.Redis | None = None) -> bool:
    """Put job ``job_id`` on its RQ queue (scheduled, if it is not due yet); whether that
    worked. A Redis error is logged and leaves ``pushed_at`` empty for the sweeper.
    """
    from rq import Queue

    database = database_of(app)
    with database.engine.connect() as db:
        row = db.execute(
            sa.select(JOBS.c.name, JOBS.c.queue, JOBS.c.run_at, JOBS.c.status).where(
                JOBS.c.id == job_id
            )
        ).first()
    if row is None or row.status != JobStatus.QUEUED:
        return False
    try:
        timeout = definition(row.name).timeout
    except LookupError:
        timeout = None
    options: dict[str, Any] = {"job_timeout": timeout, "result_ttl": 0, "failure_ttl": 86400}
    try:
        queue = Queue(row.queue, connection=connection or redis_connection(app))
        run_at = row.run_at if row.run_at.tzinfo else row.run_at.replace(tzinfo=dt.UTC)
        if run_at > utcnow():
            queue.enqueue_at(run_at, PERFORM, job_id, **options)
        else:
            queue.enqueue(PERFORM, job_id, **options)
    except redis.RedisError as exc:
        log.warning("job %s not pushed (Redis: %s); the worker's sweeper will push it", job_id, exc)
        return False
    with database.engine.execution_options(trellis_write=True).begin() as db:
        db.execute(sa.update(JOBS).where(JOBS.c.id == job_id).values(pushed_at=utcnow()))
    return True


def push_later(app: Flask, job_id: int, run_at: dt.datetime) -> None:
    """A retry's push (RQ's scheduler holds it until ``run_at``); nothing without Redis:
    the next run of due jobs here, or the worker's poll, picks it up."""
    del run_at  # the row says when; push reads it
    if uses_redis(app):
        push(app, job_id)


def repush_stale(app: Flask, connection: redis.Redis | None = None, limit: int = 500) -> int:
    """Push due queued jobs that no one has picked up for ``JOB_REPUSH_SECONDS`` (their
    push failed, or Redis lost them in a restart); how many were pushed. A job pushed
    twice still runs once: the second run finds it claimed.
    """
    now = utcnow()
    stale = now - dt.timedelta(seconds=app.config["JOB_REPUSH_SECONDS"])
    statement = (
        sa.select(JOBS.c.id)
        .where(
            JOBS.c.status == JobStatus.QUEUED,
            JOBS.c.run_at <= now,
            sa.or_(JOBS.c.pushed_at.is_(None), JOBS.c.pushed_at < stale),
        )
        .order_by(JOBS.c.run_at, JOBS.c.id)
        .limit(limit)
    )
    with database_of(app).engine.connect() as db:
        ids = list(db.execute(statement).scalars())
    pushed = 0
    for job_id in ids:
        if not push(app, job_id, connection):
            break  # Redis is down again: the next sweep goes on
        pushed += 1
    return pushed

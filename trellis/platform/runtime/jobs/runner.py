"""Running one job: claim its row, call its function, record what happened.

Whoever runs a job — an RQ worker, the worker's polling loop, or the web process after a
commit when there is no Redis — goes through ``run_job``, so the guarantees are the same:

- **Claimed once.** ``queued`` → ``running`` is one conditional UPDATE (``WHERE status =
  'queued'``) committed on its own, with a fresh claim token; a job pushed twice, or seen
  by two workers, runs once.
- **Effects commit with the outcome.** The function works in ``ctx.session``; the runner
  marks the job done *in that same transaction*, and only while the claim is still its
  own. A worker killed mid-job leaves nothing behind but an expired lease; the sweeper
  queues the job again and the next attempt starts from a clean slate.
- **Retries back off.** An error rolls the session back, records the error and queues the
  job again after ``backoff_seconds`` until ``max_attempts`` is spent; then it is
  ``failed`` and listed for an administrator to retry.
- **Progress is seen mid-run.** ``ctx.progress`` writes on a connection of its own, so a
  page or ``trellis job show`` sees it while the job's own transaction is still open.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
import time
import traceback
import uuid
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from trellis.extensions import database_of
from trellis.platform.runtime.jobs.definitions import UnknownJob, backoff_seconds, definition
from trellis.platform.runtime.models import Job, JobStatus, utcnow

if TYPE_CHECKING:
    from flask import Flask
    from sqlalchemy.orm import Session

    from trellis.extensions import Database

log = logging.getLogger(__name__)

JOBS = cast("sa.Table", Job.__table__)
PROGRESS_INTERVAL = 0.25  # seconds: a job reporting every row writes a few times a second
ERROR_LIMIT = 4000  # characters of an error kept on the row


@dataclasses.dataclass(frozen=True)
class Claim:
    """A job this runner has claimed: what it needs to run it and to record the outcome."""

    job_id: int
    token: str
    name: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    key: str | None


class JobContext:
    """What a job function gets: the app, its own session, who it is, and ``progress``.

    ``session`` is committed by the runner when the function returns (with the job marked
    done) and rolled back when it raises. ``attempt`` counts from 1.
    """

    def __init__(self, app: Flask, session: Session, claim: Claim) -> None:
        self.app = app
        self.session = session
        self.job_id = claim.job_id
        self.attempt = claim.attempt
        self.key = claim.key
        self._claim = claim
        self._last_write = 0.0
        self.last_progress: dict[str, Any] | None = None

    def progress(self, done: int, total: int | None = None, message: str = "") -> None:
        """Report ``done`` of ``total`` (and a short message), committed at once on a
        connection of its own. Reports closer than a quarter second apart are folded into
        the next one (the last is always kept: the runner writes it with the outcome).
        """
        self.last_progress = {
            "progress_done": int(done),
            "progress_total": None if total is None else int(total),
            "progress_message": str(message)[:300],
        }
        now = time.monotonic()
        finished = total is not None and done >= total
        due = finished or now - self._last_write >= PROGRESS_INTERVAL
        if due and touch(self.app, self._claim, self.last_progress):
            self._last_write = now


def run_job(app: Flask, job_id: int, now: dt.datetime | None = None) -> str | None:
    """Claim and run job ``job_id`` if it is queued and due; its new status, or ``None``
    when there was nothing to do (someone else has it, it is done, or not due yet).
    """
    claim = claim_job(app, job_id, now)
    if claim is None:
        return None
    return execute(app, claim)


def claim_job(app: Flask, job_id: int, now: dt.datetime | None = None) -> Claim | None:
    """``queued`` → ``running`` for this runner alone, committed at once (or ``None``)."""
    now = now or utcnow()
    token = str(uuid.uuid4())
    statement = (
        sa.update(JOBS)
        .where(JOBS.c.id == job_id, JOBS.c.status == JobStatus.QUEUED, JOBS.c.run_at <= now)
        .values(
            status=JobStatus.RUNNING,
            attempts=JOBS.c.attempts + 1,
            claim=token,
            started_at=now,
            finished_at=None,
            lease_until=now + _lease(app),
        )
        .returning(JOBS.c.name, JOBS.c.payload, JOBS.c.attempts, JOBS.c.max_attempts, JOBS.c.key)
    )
    with _writer(app).begin() as connection:
        row = connection.execute(statement).first()
    if row is None:
        return None
    return Claim(
        job_id, token, row.name, row.payload or {}, row.attempts, row.max_attempts, row.key
    )


def execute(app: Flask, claim: Claim) -> str:
    """Run a claimed job and record its outcome; never raises for the job's own errors."""
    database = database_of(app)
    session = database.write_session()
    ctx = JobContext(app, session, claim)
    heartbeat = _Heartbeat(app, claim)
    heartbeat.start()
    try:
        try:
            with app.app_context():
                result = definition(claim.name)(ctx, **claim.payload)
            json.dumps(result)  # refuse a result the JSON column could not hold, as an error
        except Exception as exc:
            session.rollback()
            return _record_failure(app, claim, exc, ctx.last_progress)
        return _record_success(session, claim, result, ctx.last_progress)
    finally:
        heartbeat.stop()
        session.close()


def _record_success(
    session: Session, claim: Claim, result: Any, progress: dict[str, Any] | None
) -> str:
    """Mark the job done in the job's own transaction, so its effects and its outcome
    commit together — unless the claim was lost (the lease ran out and someone else took
    the job over): then nothing of this attempt is kept.
    """
    done = session.execute(
        _owned(claim).values(
            status=JobStatus.DONE,
            result=result,
            error=None,
            finished_at=utcnow(),
            lease_until=None,
            **(progress or {}),
        )
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        log.warning(
            "job %s lost its claim while running; its effects were rolled back", claim.job_id
        )
        return JobStatus.QUEUED
    session.commit()
    return JobStatus.DONE


def _record_failure(
    app: Flask, claim: Claim, exc: BaseException, progress: dict[str, Any] | None
) -> str:
    """Queue the job again after a back-off, or mark it failed once its attempts are spent."""
    if isinstance(exc, UnknownJob):
        message = str(exc)
    else:
        message = "".join(traceback.format_exception(exc))[-ERROR_LIMIT:]
    now = utcnow()
    retry = claim.attempt < claim.max_attempts
    values: dict[str, Any] = {"error": message, "lease_until": None, "claim": None}
    if retry:
        delay = backoff_seconds(claim.attempt, app.config["RETRY_BASE_SECONDS"])
        values |= {"status": JobStatus.QUEUED, "run_at": now + dt.timedelta(seconds=delay)}
    else:
        values |= {"status": JobStatus.FAILED, "finished_at": now}
    with _writer(app).begin() as connection:
        changed = connection.execute(_owned(claim).values(**values, **(progress or {})))
    log.info("job %s (%s) attempt %s failed: %s", claim.job_id, claim.name, claim.attempt, exc)
    if not changed.rowcount:
        return JobStatus.QUEUED  # taken over meanwhile; the new owner decides
    if retry:
        from trellis.platform.runtime.jobs.queue import push_later

        push_later(app, claim.job_id, values["run_at"])
    return str(values["status"])


def _owned(claim: Claim) -> sa.Update:
    """An UPDATE of the job that only applies while this runner's claim still holds."""
    return sa.update(JOBS).where(
        JOBS.c.id == claim.job_id,
        JOBS.c.status == JobStatus.RUNNING,
        JOBS.c.claim == claim.token,
    )


def touch(app: Flask, claim: Claim, values: dict[str, Any]) -> bool:
    """Write progress (and push the lease on) in a short transaction of its own.

    On SQLite the job's own transaction may hold the write lock: then this waits a moment
    only, and says ``False`` (the values are written with the outcome, or next time).
    """
    values = {**values, "lease_until": utcnow() + _lease(app)}
    database = database_of(app)
    try:
        with _short_wait(database) as connection, connection.begin():
            connection.execute(_owned(claim).values(**values))
    except OperationalError as exc:
        if "locked" not in str(exc.orig):
            raise
        return False
    return True


class _short_wait:
    """A write connection that waits at most 0.2 s for SQLite's lock (its normal wait is 30)."""

    def __init__(self, database: Database) -> None:
        self.connection = database.engine.execution_options(trellis_write=True).connect()
        self.sqlite = database.dialect == "sqlite"

    def __enter__(self) -> sa.Connection:
        if self.sqlite:
            self._pragma(200)
        return self.connection

    def __exit__(self, *exc: object) -> None:
        try:
            if self.sqlite:
                self._pragma(30000)
        finally:
            self.connection.close()

    def _pragma(self, milliseconds: int) -> None:
        raw = self.connection.connection.driver_connection
        assert raw is not None
        raw.execute(f"PRAGMA busy_timeout={int(milliseconds)}")


class _Heartbeat:
    """Pushes a running job's lease on every third of it, from a thread, so a long job
    that reports no progress is not mistaken for one whose worker died.
    """

    def __init__(self, app: Flask, claim: Claim) -> None:
        self.app = app
        self.claim = claim
        self.stopped = threading.Event()
        self.thread = threading.Thread(
            target=self._beat, name=f"job-{claim.job_id}-lease", daemon=True
        )

    def start(self) -> None:
        """Start beating."""
        self.thread.start()

    def stop(self) -> None:
        """Stop beating (the outcome has been recorded, or is about to be)."""
        self.stopped.set()
        self.thread.join(timeout=5)

    def _beat(self) -> None:
        interval = max(self.app.config["JOB_LEASE_SECONDS"] / 3, 0.2)
        while not self.stopped.wait(interval):
            try:
                touch(self.app, self.claim, {})
            except Exception:  # a missed beat is retried; the lease has room for two
                log.warning("job %s: lease not renewed", self.claim.job_id, exc_info=True)


def sweep_lost(app: Flask, now: dt.datetime | None = None) -> list[int]:
    """Queue again (or fail, when their attempts are spent) running jobs whose lease ran
    out: their worker died. Returns the ids queued again, to be pushed.
    """
    now = now or utcnow()
    lost = sa.and_(JOBS.c.status == JobStatus.RUNNING, JOBS.c.lease_until < now)
    spent = JOBS.c.attempts >= JOBS.c.max_attempts
    message = "the worker running this job stopped before it finished (its lease ran out)"
    statement = (
        sa.update(JOBS)
        .where(lost)
        .values(
            status=sa.case((spent, JobStatus.FAILED.value), else_=JobStatus.QUEUED.value),
            finished_at=sa.case((spent, now), else_=None),
            run_at=now,
            claim=None,
            lease_until=None,
            error=message,
        )
        .returning(JOBS.c.id, JOBS.c.status)
    )
    with _writer(app).begin() as connection:
        rows = connection.execute(statement).all()
    for row in rows:
        log.warning("job %s was lost with its worker; now %s", row.id, row.status)
    return [row.id for row in rows if row.status == JobStatus.QUEUED]


def _lease(app: Flask) -> dt.timedelta:
    return dt.timedelta(seconds=app.config["JOB_LEASE_SECONDS"])


def _writer(app: Flask) -> sa.Engine:
    """The app's engine, its transactions taking SQLite's write lock up front."""
    return database_of(app).engine.execution_options(trellis_write=True)

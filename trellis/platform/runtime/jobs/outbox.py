"""The outbox: events that must not be lost, written with the change they tell of.

``emit`` adds an ``outbox_events`` row in the caller's transaction, so the event exists
exactly when the change does. A relay delivers it through the deliverer registered for its
kind (``@outbox.deliverer("webhook")``), at least once: a delivery whose outcome was not
recorded (a crash, a timeout) is made again, with the same ``event_id``, so receivers
de-duplicate on it. A failed delivery is retried with exponential back-off and jitter up to
``TRELLIS_OUTBOX_MAX_ATTEMPTS`` times, then the event is marked ``failed`` (kept, listed).

The relay needs no Redis: it claims due rows from the database (``FOR UPDATE SKIP LOCKED``
on PostgreSQL, so several relays share the work), a batch at a time, and delivers the
batch in one session whose commit marks every event it delivered (a deliverer's writes,
a delivery log, commit with it). Redis only wakes it early: after a commit that emitted
events, one push on a Redis list. If Redis is down the relay polls.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import time
import traceback
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import redis
import sqlalchemy as sa

from trellis.exceptions import NotFound, NotRetryable
from trellis.extensions import database_of
from trellis.platform.messages import N_
from trellis.platform.runtime.jobs.definitions import backoff_seconds
from trellis.platform.runtime.models import OutboxEntry, OutboxStatus, as_utc, utcnow
from trellis.platform.runtime.records.hooks import collect_until_commit

if TYPE_CHECKING:
    from flask import Flask
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

OUTBOX = cast("sa.Table", OutboxEntry.__table__)
WAKE_KEY = "trellis:outbox:wake"  # a Redis list the relay blocks on between polls
CLAIM_BATCH = 10  # events claimed, and delivered in one session, at a time
BATCH_COMMIT_SECONDS = 0.5  # PostgreSQL: how long a batch's deliveries may share a commit
_EMITTED_KEY = "trellis.outbox.emitted"


@dataclasses.dataclass(frozen=True)
class OutboxEvent:
    """One event as a deliverer sees it; ``attempt`` counts from 1."""

    id: int
    event_id: str
    kind: str
    target: str | None
    payload: dict[str, Any]
    attempt: int
    created_at: dt.datetime


class DeliveryFailed(Exception):
    """Raised by a deliverer that has recorded a failure itself (a delivery log row): its
    session is then committed, and the event retried later. Any other error rolls it back.
    """


Deliverer = Callable[["Session", OutboxEvent], None]
_deliverers: dict[str, Deliverer] = {}


def deliverer(kind: str) -> Callable[[Deliverer], Deliverer]:
    """Register the decorated ``function(session, event)`` as the deliverer of ``kind``.

    The relay calls it at least once per event, in a savepoint of the relay's session:
    what it wrote is committed with the event marked delivered when it returns (or raises
    ``DeliveryFailed``), and rolled back when it raises anything else. The events of one
    batch may share that commit: when a relay dies before it, they are all delivered
    again (with the same event ids) after the lease.
    """

    def register(function: Deliverer) -> Deliverer:
        _deliverers[kind] = function
        return function

    return register


def emit(
    session: Session,
    kind: str,
    payload: dict[str, Any],
    event_id: str | None = None,
    target: str | None = None,
) -> str:
    """Write an outbox event in the caller's transaction; its stable event id (a UUID).

    Passing the ``event_id`` of an event already written is refused by the unique index
    (one change, one event): callers pass one only to tie the event to an id of their own.
    """
    event_id = event_id or str(uuid.uuid4())
    now = utcnow()
    session.execute(
        sa.insert(OUTBOX).values(
            event_id=event_id,
            kind=kind,
            target=target,
            payload=payload,
            status=OutboxStatus.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    _relay_after_commit(session, event_id)
    return event_id


def _relay_after_commit(session: Session, event_id: str) -> None:
    """Once ``session`` commits, wake a relay for ``event_id`` (or relay it here)."""
    from trellis.platform.runtime.jobs.queue import app_of

    app = app_of(session)
    collect_until_commit(session, _EMITTED_KEY, lambda events: _emitted(app, events)).append(
        event_id
    )


def _emitted(app: Flask, event_ids: list[str]) -> None:
    """After a commit that emitted events: wake a relay (Redis), or relay them here."""
    from trellis.platform.runtime.jobs.queue import POLLING_KEY, redis_connection, uses_redis

    if app.extensions.get(POLLING_KEY):
        return  # a worker: its relay loop is polling
    if not uses_redis(app):
        relay_due(app, limit=max(len(event_ids), CLAIM_BATCH))
        return
    try:
        client = redis_connection(app)
        pipeline = client.pipeline()
        pipeline.lpush(WAKE_KEY, len(event_ids))
        pipeline.ltrim(WAKE_KEY, 0, 99)
        pipeline.execute()
    except redis.RedisError as exc:  # the relay polls; the events are safe in the table
        log.info("outbox relay not woken (Redis: %s); it will find the events by polling", exc)


def relay_due(app: Flask, limit: int = 100, now: dt.datetime | None = None) -> int:
    """Deliver up to ``limit`` due events, oldest first; how many were delivered. Every
    batch is claimed and delivered on one connection, checked out (and pinged) once."""
    delivered = 0
    remaining = limit
    with database_of(app).engine.connect() as connection:
        connection.execution_options(trellis_write=True)
        while remaining > 0:
            batch = claim_due(app, min(remaining, CLAIM_BATCH), now, connection)
            if not batch:
                break
            remaining -= len(batch)
            delivered += deliver_batch(app, batch, connection)
    return delivered


def claim_due(
    app: Flask,
    limit: int,
    now: dt.datetime | None = None,
    connection: sa.Connection | None = None,
) -> list[OutboxEvent]:
    """Take up to ``limit`` due events for this relay: their next attempt moves past the
    lease, so another relay skips them, and a relay that dies lets them come due again.
    The claim is committed at once (on ``connection``, if given).
    """
    now = now or utcnow()
    lease_end = now + dt.timedelta(seconds=app.config["JOB_LEASE_SECONDS"])
    due = (
        sa.select(OUTBOX.c.id)
        .where(OUTBOX.c.status == OutboxStatus.PENDING, OUTBOX.c.next_attempt_at <= now)
        .order_by(OUTBOX.c.next_attempt_at, OUTBOX.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        sa.update(OUTBOX)
        .where(OUTBOX.c.id.in_(due.scalar_subquery()))
        .values(attempts=OUTBOX.c.attempts + 1, next_attempt_at=lease_end)
        .returning(*OUTBOX.c)
    )
    if connection is None:
        with database_of(app).engine.execution_options(trellis_write=True).begin() as own:
            rows = own.execute(statement).all()
    else:
        with connection.begin():
            rows = connection.execute(statement).all()
    return sorted(
        (
            OutboxEvent(
                id=row.id,
                event_id=row.event_id,
                kind=row.kind,
                target=row.target,
                payload=row.payload or {},
                attempt=row.attempts,
                created_at=as_utc(row.created_at),
            )
            for row in rows
        ),
        key=lambda event: event.id,
    )


def deliver_batch(
    app: Flask, events: list[OutboxEvent], connection: sa.Connection | None = None
) -> int:
    """Deliver claimed events, in order, in one session; how many were delivered.

    Each deliverer runs in a savepoint: its writes are kept when it returns, or raises
    ``DeliveryFailed``, and undone alone when it raises anything else. The events
    delivered are marked in one UPDATE, with the session's commit. On PostgreSQL the
    batch shares that commit as long as it takes less than ``BATCH_COMMIT_SECONDS``
    (then the session commits and goes on); on SQLite every event commits on its own,
    since the session holds the database's one write lock meanwhile. A batch still
    running at half its lease hands the events it has not tried back (due now), so
    another relay never takes over an event this one is about to deliver.
    """
    started = time.monotonic()
    hand_back_at = started + app.config["JOB_LEASE_SECONDS"] / 2
    database = database_of(app)
    session = (
        database.write_session() if connection is None else database.sessionmaker(bind=connection)
    )
    shared = session.get_bind().dialect.name == "postgresql"
    delivered: list[int] = []
    count = 0
    try:
        with app.app_context():
            opened = time.monotonic()
            for index, event in enumerate(events):
                if time.monotonic() > hand_back_at:
                    _hand_back(session, events[index:])
                    break
                if _attempt(app, session, event):
                    delivered.append(event.id)
                if not shared or time.monotonic() - opened > BATCH_COMMIT_SECONDS:
                    count += _commit(session, delivered)
                    delivered, opened = [], time.monotonic()
            count += _commit(session, delivered)
    finally:
        session.close()
    return count


def _attempt(app: Flask, session: Session, event: OutboxEvent) -> bool:
    """One deliverer call in a savepoint; its outcome recorded in the session."""
    savepoint = session.begin_nested()
    try:
        function = _deliverers.get(event.kind)
        if function is None:
            raise LookupError(
                f"no deliverer is registered for outbox events of kind {event.kind!r}"
            )
        function(session, event)
    except DeliveryFailed as exc:
        savepoint.commit()
        _retry_later(app, session, event, str(exc))
        return False
    except Exception as exc:
        savepoint.rollback()
        _retry_later(app, session, event, "".join(traceback.format_exception(exc))[-4000:])
        return False
    savepoint.commit()
    return True


def _commit(session: Session, delivered: list[int]) -> int:
    """Mark ``delivered`` (still pending: claimed by this relay) and commit; how many."""
    if delivered:
        session.execute(
            sa.update(OUTBOX)
            .where(OUTBOX.c.id.in_(delivered), OUTBOX.c.status == OutboxStatus.PENDING)
            .values(status=OutboxStatus.DELIVERED, delivered_at=utcnow(), last_error=None)
        )
    session.commit()
    return len(delivered)


def _hand_back(session: Session, events: list[OutboxEvent]) -> None:
    """Claimed events not tried: due again now, their claim's attempt not counted."""
    for event in events:
        session.execute(
            _claimed(event).values(attempts=event.attempt - 1, next_attempt_at=utcnow())
        )


def _claimed(event: OutboxEvent) -> sa.Update:
    """An UPDATE of the event that applies only while it is still pending."""
    return sa.update(OUTBOX).where(OUTBOX.c.id == event.id, OUTBOX.c.status == OutboxStatus.PENDING)


def _retry_later(app: Flask, session: Session, event: OutboxEvent, error: str) -> None:
    log.info(
        "outbox event %s (%s) attempt %s failed: %s",
        event.event_id,
        event.kind,
        event.attempt,
        error.strip().splitlines()[-1:],
    )
    if event.attempt >= app.config["OUTBOX_MAX_ATTEMPTS"]:
        # A failed event is never due: its next attempt's moment says when it was given up.
        values: dict[str, Any] = {"status": OutboxStatus.FAILED, "next_attempt_at": utcnow()}
    else:
        delay = backoff_seconds(event.attempt, app.config["RETRY_BASE_SECONDS"])
        values = {"next_attempt_at": utcnow() + dt.timedelta(seconds=delay)}
    session.execute(_claimed(event).values(last_error=error, **values))


def retry_failed(session: Session, event_id: str) -> bool:
    """Make a failed event due again, with a fresh count of attempts; whether it was failed.
    Once the caller commits, a relay is woken for it (or it is relayed in this process)."""
    changed = session.execute(
        sa.update(OUTBOX)
        .where(OUTBOX.c.event_id == event_id, OUTBOX.c.status == OutboxStatus.FAILED)
        .values(status=OutboxStatus.PENDING, attempts=0, next_attempt_at=utcnow())
    )
    if not changed.rowcount:  # type: ignore[attr-defined]
        return False
    _relay_after_commit(session, event_id)
    return True


# --- reading events (the Setup page and the API) ----------------------------------------

# What the Setup page and the API list: events given up on (``failed``), and those whose
# last attempt failed and that wait for their back-off (``retrying``: still pending).
LISTED = ("failed", "retrying")
EVENT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def list_events(
    session: Session,
    *,
    state: str = "failed",
    before_id: int | None = None,
    limit: int = 50,
) -> list[OutboxEntry]:
    """The ``failed`` or ``retrying`` events (``LISTED``), newest first, older than
    ``before_id`` (the page's cursor), at most ``limit``."""
    if state == "failed":
        condition = OutboxEntry.status == OutboxStatus.FAILED
    elif state == "retrying":
        condition = sa.and_(
            OutboxEntry.status == OutboxStatus.PENDING, OutboxEntry.last_error.is_not(None)
        )
    else:
        raise ValueError(f"not a listed state: {state!r}")
    query = sa.select(OutboxEntry).where(condition).order_by(OutboxEntry.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(OutboxEntry.id < before_id)
    return list(session.scalars(query))


def get_event(session: Session, event_id: str) -> OutboxEntry:
    """The event ``event_id`` (a UUID, checked before it reaches SQL); else ``NotFound``."""
    found = (
        session.scalars(sa.select(OutboxEntry).where(OutboxEntry.event_id == event_id)).first()
        if isinstance(event_id, str) and EVENT_ID.match(event_id)
        else None
    )
    if found is None:
        raise NotFound(N_("no outbox event %(id)s", id=str(event_id)[:40]))
    return found


def retry_event(session: Session, event_id: str) -> OutboxEntry:
    """``retry_failed`` for one event, which must exist (``NotFound``) and have failed
    (``NotRetryable`` otherwise: two retries at once queue it once); it is relayed after
    the caller commits."""
    entry = get_event(session, event_id)
    if not retry_failed(session, event_id):
        raise NotRetryable(
            N_(
                "event %(id)s is %(status)s: only a failed event can be retried",
                id=event_id,
                status=entry.status,
            )
        )
    session.refresh(entry)
    return entry

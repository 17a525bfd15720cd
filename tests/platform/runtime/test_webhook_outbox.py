"""Webhooks and notification e-mails through the real outbox and relay (in-process: no
Redis set, so the relay runs right after the commit that emitted the events; the RQ
worker's relay calls the same deliverers, tests/platform/runtime/jobs)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import ADMIN_EMAIL, Api
from tests.factories import dealer_definition
from tests.platform.runtime.helpers import error_of
from tests.platform.runtime.jobs.helpers import api_as, plain_user
from tests.platform.runtime.smtp_server import running_smtp_server
from tests.platform.runtime.webhook_receiver import Receiver, running_receiver
from trellis.extensions import Database
from trellis.platform.runtime import webhooks
from trellis.platform.runtime.jobs import outbox
from trellis.platform.runtime.models import OutboxEntry, User, utcnow
from trellis.platform.runtime.notifications import notify


@pytest.fixture
def app(app: Flask) -> Flask:
    app.config["WEBHOOK_ALLOWED_NETWORKS"] = "127.0.0.0/8"
    app.config["WEBHOOK_TIMEOUT"] = 0.5
    return app


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as found:
        yield found


def make_webhook(api: Api, receiver: Receiver, **extra: Any) -> dict[str, Any]:
    body = {"name": "ERP", "url": receiver.url, "events": ["record.created"], **extra}
    created: dict[str, Any] = api.post("/webhooks", body).get_json()
    receiver.secret = created["secret"]
    return created


def publish_dealer(app: Flask, api: Api, database: Database) -> list[str]:
    dealer = api.post("/records/dealer", {"name": "Acme", "credit_limit": 10}).get_json()
    registry = app.extensions["trellis.registry"]
    with database.session() as session:
        record = webhooks.record_json(session, registry, "dealer", dealer["id"])
        ids = webhooks.publish(session, "record.created", "dealer", record)
        session.commit()  # the relay runs now, in this process
    return ids


def entries(database: Database) -> list[OutboxEntry]:
    with database.session() as session:
        found = list(session.scalars(sa.select(OutboxEntry).order_by(OutboxEntry.id)))
        session.expunge_all()
        return found


def later(app: Flask) -> int:
    """The relay run an hour on: every event retried with back-off is due again."""
    return outbox.relay_due(app, now=utcnow() + dt.timedelta(hours=1))


def test_a_published_event_is_delivered_once_per_wanting_webhook(
    app: Flask, api: Api, database: Database, receiver: Receiver
) -> None:
    assert api.post("/objects", dealer_definition()).status_code == 201
    wanted = make_webhook(api, receiver, objects=["dealer"])
    make_webhook(api, receiver, name="Deletions", events=["record.deleted"])  # not this event
    make_webhook(api, receiver, name="Off", active=False)
    receiver.secret = wanted["secret"]

    [event_id] = publish_dealer(app, api, database)

    [event] = receiver.taken
    assert event["id"] == event_id and event["type"] == "record.created"
    assert event["record"]["name"] == "Acme" and receiver.bad_signatures == 0
    [entry] = entries(database)
    assert (entry.status, entry.attempts, entry.target) == ("delivered", 1, str(wanted["id"]))
    [logged] = api.get(f"/webhooks/{wanted['id']}/deliveries").get_json()["items"]
    assert (logged["event_id"], logged["attempt"], logged["ok"]) == (event_id, 1, True)


def test_a_500_and_a_timeout_are_retried_with_the_same_event_id(
    app: Flask, api: Api, database: Database, receiver: Receiver
) -> None:
    assert api.post("/objects", dealer_definition()).status_code == 201
    webhook = make_webhook(api, receiver)
    receiver.script = [500, ("sleep", 2)]

    [event_id] = publish_dealer(app, api, database)
    [entry] = entries(database)
    assert entry.status == "pending" and entry.attempts == 1 and "HTTP 500" in str(entry.last_error)
    assert receiver.taken == []
    # An hour on, the event is due: the receiver is too slow once (attempt 2), and the
    # retry after that back-off, due within the same run, lands (attempt 3).
    later(app)
    assert [event["id"] for event in receiver.taken] == [event_id]
    assert entries(database)[0].status == "delivered"
    items = api.get(f"/webhooks/{webhook['id']}/deliveries").get_json()["items"]
    assert [(i["attempt"], i["ok"], i["status_code"]) for i in items] == [
        (3, True, 200),
        (2, False, None),
        (1, False, 500),
    ]
    assert {i["event_id"] for i in items} == {event_id}


def test_publishing_reads_the_webhooks_once_per_metadata_revision(
    app: Flask, api: Api, database: Database, receiver: Receiver
) -> None:
    """With the registry, the webhooks are read once per revision; changing one (through
    the service) moves the revision, so the next publish reads them again."""
    webhook = make_webhook(api, receiver)
    registry = app.extensions["trellis.registry"]
    reads: list[str] = []

    def count(_c: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM webhooks" in statement:
            reads.append(statement)

    sa.event.listen(database.engine, "before_cursor_execute", count)
    try:
        with database.session() as session:
            registry.ensure_current(session)
            for _ in range(3):
                assert (
                    len(
                        webhooks.publish(
                            session, "record.created", "dealer", {"id": 1}, registry=registry
                        )
                    )
                    == 1
                )
            assert len(reads) == 1
            session.rollback()
        assert api.patch(f"/webhooks/{webhook['id']}", {"active": False}).status_code == 200
        reads.clear()
        with database.session() as session:
            registry.ensure_current(session)
            assert (
                webhooks.publish(session, "record.created", "dealer", {"id": 1}, registry=registry)
                == []
            )
            assert len(reads) == 1
    finally:
        sa.event.remove(database.engine, "before_cursor_execute", count)


def test_nothing_is_published_for_a_change_that_rolls_back(
    app: Flask, api: Api, database: Database, receiver: Receiver
) -> None:
    make_webhook(api, receiver)
    with database.session() as session:
        webhooks.publish(session, "record.created", "dealer", {"id": 1})
        session.rollback()
    assert entries(database) == [] and receiver.requests == 0


def test_send_test_goes_through_the_outbox(api: Api, receiver: Receiver) -> None:
    webhook = make_webhook(api, receiver)
    answer = api.post(f"/webhooks/{webhook['id']}/test")
    assert answer.status_code == 202
    [event] = receiver.taken
    assert event["id"] == answer.get_json()["event_id"]
    assert (event["type"], event["object"], event["record"]) == ("webhook.test", None, None)


def test_a_notification_email_goes_through_the_outbox_to_a_real_smtp_server(
    app: Flask, database: Database
) -> None:
    with database.session() as session:
        session.execute(
            sa.update(User).where(User.email == ADMIN_EMAIL).values(email_notifications=True)
        )
        admin_id = session.scalar(sa.select(User.id).where(User.email == ADMIN_EMAIL))
        session.commit()
    with running_smtp_server() as inbox:
        app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=inbox.port, SMTP_STARTTLS=False)
        with app.app_context(), database.session() as session:
            notify(session, [admin_id], "Credit limit passed", "Acme is at 92 %")
            session.commit()
    [message] = inbox.messages
    assert message["To"] == ADMIN_EMAIL and message["Subject"] == "Credit limit passed"
    assert [(e.kind, e.status) for e in entries(database)] == [("email", "delivered")]


def test_the_outbox_api_lists_failed_events_and_retries_one(
    app: Flask, api: Api, database: Database, receiver: Receiver
) -> None:
    """``/outbox`` (administrators): failed and retrying events; a retry is relayed after
    its commit, so a receiver that is back gets the event, with the same id."""
    make_webhook(api, receiver)
    receiver.script = [500, 500]
    app.config["OUTBOX_MAX_ATTEMPTS"] = 1
    with database.session() as session:
        [failed] = webhooks.publish(session, "record.created", "dealer", {"id": 1})
        session.commit()
    app.config["OUTBOX_MAX_ATTEMPTS"] = 3
    with database.session() as session:
        [retrying] = webhooks.publish(session, "record.created", "dealer", {"id": 2})
        session.commit()

    [item] = api.get("/outbox").get_json()["items"]
    assert (item["event_id"], item["status"], item["kind"], item["type"]) == (
        failed, "failed", "webhook", "record.created",
    )  # fmt: skip
    assert item["attempts"] == 1 and "HTTP 500" in item["last_error"]
    assert item["failed_at"] is not None and item["next_attempt_at"] is None
    [waiting] = api.get("/outbox", query_string={"status": "retrying"}).get_json()["items"]
    assert waiting["event_id"] == retrying and waiting["next_attempt_at"] is not None
    assert api.get(f"/outbox/{failed}").get_json()["payload"]["record"] == {"id": 1}
    error_of(api.get("/outbox", query_string={"status": "delivered"}), 400)
    error_of(api.get("/outbox/not-a-uuid"), 404)
    error_of(api.get("/outbox/00000000-0000-0000-0000-000000000000"), 404)

    retried = api.post(f"/outbox/{failed}/retry")
    assert retried.status_code == 200
    assert retried.get_json()["status"] == "delivered"
    assert [event["id"] for event in receiver.taken] == [failed]
    error_of(api.post(f"/outbox/{failed}/retry"), 409, "not_retryable")
    assert api.get("/outbox").get_json()["items"] == []

    _user_id, token = plain_user(database)
    clerk = api_as(api, token)
    error_of(clerk.get("/outbox"), 403)
    error_of(clerk.post(f"/outbox/{retrying}/retry"), 403)

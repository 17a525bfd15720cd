"""Setup → Failed events: the outbox's failed and retrying events, their Retry (a form with
its CSRF token) delivering for real to a receiver that is back, administrators only, in
both languages. Through Flask's client, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.platform.runtime.webhook_receiver import Receiver, running_receiver
from tests.ui.conftest import SignIn, csrf_of
from trellis.extensions import database_of
from trellis.platform.runtime import webhooks
from trellis.platform.runtime.models import AuditEvent, OutboxEntry

ADMIN = "admin@example.com"


@pytest.fixture
def receiver(pack_app: Flask) -> Iterator[Receiver]:
    pack_app.config["WEBHOOK_ALLOWED_NETWORKS"] = "127.0.0.0/8"
    pack_app.config["WEBHOOK_TIMEOUT"] = 0.5
    with running_receiver() as found:
        yield found


def publish(app: Flask, max_attempts: int) -> str:
    """One event to every webhook, relayed in-process after the commit (one attempt)."""
    app.config["OUTBOX_MAX_ATTEMPTS"] = max_attempts
    with database_of(app).session() as session:
        [event_id] = webhooks.publish(session, "record.created", "dealer", {"id": 1})
        session.commit()
    return event_id


def entry(app: Flask, event_id: str) -> OutboxEntry:
    with database_of(app).session() as session:
        found = session.scalars(sa.select(OutboxEntry).where(OutboxEntry.event_id == event_id))
        row = found.one()
        session.expunge(row)
        return row


@pytest.fixture
def events(sign_in: SignIn, pack_app: Flask, receiver: Receiver) -> tuple[str, str]:
    """A failed event (its one attempt answered 500) and a retrying one (1 of 3 attempts)."""
    admin = sign_in(ADMIN, language="en")
    body = {"name": "ERP sync", "url": receiver.url, "events": ["record.created"]}
    page = admin.get("/setup/webhooks/new").get_data(as_text=True)
    created = admin.post(
        "/setup/webhooks/new", data={"csrf_token": csrf_of(page), "active": "true", **body}
    )
    assert created.status_code == 201
    receiver.secret = created.get_data(as_text=True).split("data-secret>")[1].split("<")[0]
    receiver.script = [500, 500]
    failed = publish(pack_app, max_attempts=1)
    retrying = publish(pack_app, max_attempts=3)
    assert (entry(pack_app, failed).status, entry(pack_app, retrying).status) == (
        "failed",
        "pending",
    )
    return failed, retrying


def test_failed_events_are_listed_and_a_retry_delivers_them(
    sign_in: SignIn, pack_app: Flask, receiver: Receiver, events: tuple[str, str]
) -> None:
    failed, retrying = events
    admin = sign_in(ADMIN, language="en")
    assert 'href="/setup/outbox"' in admin.get("/").get_data(as_text=True)
    page = admin.get("/setup/outbox").get_data(as_text=True)
    assert f'data-event="{failed}"' in page and f'data-event="{retrying}"' not in page
    assert "HTTP 500" in page and "ERP sync" in page and "record.created" in page
    later = admin.get("/setup/outbox?status=retrying").get_data(as_text=True)
    assert f'data-event="{retrying}"' in later and f'data-event="{failed}"' not in later
    assert f"/setup/outbox/{retrying}/retry" not in later  # only a failed event has Retry

    assert admin.post(f"/setup/outbox/{failed}/retry").status_code == 400  # no CSRF token
    assert entry(pack_app, failed).status == "failed"
    done = admin.post(
        f"/setup/outbox/{failed}/retry", data={"csrf_token": csrf_of(page)}, follow_redirects=True
    )
    assert done.status_code == 200
    assert f"Event {failed} was delivered." in done.get_data(as_text=True)
    assert [event["id"] for event in receiver.taken] == [failed]  # the same event id
    stored = entry(pack_app, failed)
    assert (stored.status, stored.attempts, stored.last_error) == ("delivered", 1, None)
    again = admin.post(
        f"/setup/outbox/{failed}/retry", data={"csrf_token": csrf_of(page)}, follow_redirects=True
    )
    assert "Only a failed event can be retried." in again.get_data(as_text=True)
    with database_of(pack_app).session() as session:
        audited = session.scalars(
            sa.select(AuditEvent.target).where(AuditEvent.action == "outbox.retried")
        ).all()
    assert audited == [f"outbox/{failed}"]


def test_the_page_is_for_administrators_and_speaks_chinese(
    sign_in: SignIn, events: tuple[str, str]
) -> None:
    failed, _retrying = events
    manager = sign_in("channel@example.com")
    assert manager.get("/setup/outbox").status_code == 403
    token = csrf_of(manager.get("/").get_data(as_text=True))
    assert (
        manager.post(f"/setup/outbox/{failed}/retry", data={"csrf_token": token}).status_code == 403
    )
    assert "/setup/outbox" not in manager.get("/").get_data(as_text=True)
    admin = sign_in(ADMIN, language="zh-CN")
    page = admin.get("/setup/outbox").get_data(as_text=True)
    assert "投递失败的事件" in page and "重试" in page
    assert (
        admin.post("/setup/outbox/not-a-uuid/retry", data={"csrf_token": csrf_of(page)}).status_code
        == 404
    )

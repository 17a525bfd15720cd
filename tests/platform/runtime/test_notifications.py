"""Notifications: ``notify`` in the caller's transaction, the caller's own list at
``/api/v1/notifications`` (unread count, mark read one / all, link), the e-mail preference,
and e-mail through a real local SMTP server."""

from __future__ import annotations

from email.header import decode_header, make_header
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import ADMIN_EMAIL, Api
from tests.platform.runtime.smtp_server import free_port, running_smtp_server
from trellis.exceptions import DeliveryFailed, ValidationFailed
from trellis.extensions import Database
from trellis.platform.runtime.identity.tokens import issue_token
from trellis.platform.runtime.models import Notification, User
from trellis.platform.runtime.notifications import notify
from trellis.platform.runtime.notifications.email import SmtpSettings, deliver_email
from trellis.platform.runtime.notifications.service import email_payload


def user_id(database: Database, email: str) -> int:
    with database.session() as session:
        found = session.scalar(sa.select(User.id).where(User.email == email))
    assert found is not None
    return int(found)


def make_user(api: Api, database: Database, email: str, **extra: Any) -> Api:
    body = {"email": email, "password": "a long user password", **extra}
    assert api.post("/users", body).status_code == 201
    with database.session() as session:
        token = issue_token(session, email, name="t")
        session.commit()
    return Api(api.client, token)


def send(app: Flask, database: Database, ids: list[int], *args: Any, **kwargs: Any) -> list[int]:
    with app.app_context(), database.session() as session:
        rows = notify(session, ids, *args, **kwargs)
        session.commit()
        return [row.id for row in rows]


def test_the_callers_notifications_are_listed_counted_and_marked_read(
    app: Flask, api: Api, database: Database
) -> None:
    clerk = make_user(api, database, "clerk@example.com", language="zh-CN")
    admin_id, clerk_id = user_id(database, ADMIN_EMAIL), user_id(database, "clerk@example.com")
    send(app, database, [admin_id, clerk_id], "Plain title", "Body text")
    title = {"en": "Credit limit passed", "zh-CN": "超过信用额度"}
    [mine, theirs] = send(app, database, [admin_id, clerk_id, 999], title, None, ("dealer", 7))

    page = api.get("/notifications").get_json()
    assert page["unread"] == 2
    assert [item["id"] for item in page["items"]] == [mine, mine - 2]
    newest = page["items"][0]
    assert newest["title"] == title and newest["body"] == {"en": ""}
    assert newest["link"] == {"object": "dealer", "record_id": 7}
    assert newest["read_at"] is None
    assert page["items"][1]["link"] is None and page["items"][1]["body"] == {"en": "Body text"}

    read = api.post(f"/notifications/{mine}/read").get_json()
    assert read["read_at"] is not None
    assert api.post(f"/notifications/{mine}/read").get_json()["read_at"] == read["read_at"]
    assert api.get("/notifications/unread-count").get_json() == {"unread": 1}
    assert [i["id"] for i in api.get("/notifications?unread=true").get_json()["items"]] == [
        mine - 2
    ]
    # Nobody reads or marks another's.
    assert clerk.post(f"/notifications/{mine}/read").status_code == 404
    assert api.post(f"/notifications/{theirs}/read").status_code == 404
    assert clerk.get("/notifications/unread-count").get_json() == {"unread": 2}

    assert api.post("/notifications/read-all").get_json() == {"unread": 0}
    assert api.get("/notifications").get_json()["unread"] == 0
    assert clerk.get("/notifications").get_json()["unread"] == 2
    older = api.get(f"/notifications?before={mine}&limit=1").get_json()["items"]
    assert [item["id"] for item in older] == [mine - 2]


def test_bad_queries_and_bodies_are_refused(api: Api) -> None:
    assert api.get("/notifications?limit=0").status_code == 400
    assert api.get("/notifications?unread=maybe").status_code == 400
    assert api.get("/notifications?colour=red").status_code == 400
    assert api.post("/notifications/999/read").status_code == 404
    assert api.put("/notifications/preferences", {"email": "yes"}).status_code == 422
    assert api.put("/notifications/preferences", {"sms": True}).status_code == 422


def test_notify_writes_in_the_callers_transaction(app: Flask, database: Database) -> None:
    admin_id = user_id(database, ADMIN_EMAIL)
    with app.app_context(), database.session() as session:
        notify(session, [admin_id], "Lost with its change")
        session.rollback()
        with pytest.raises(ValidationFailed):
            notify(session, [admin_id], {"fr": "Bonjour"})
        assert notify(session, [], "Nobody") == []
    with database.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Notification)) == 0


def test_an_inactive_user_is_not_notified(app: Flask, api: Api, database: Database) -> None:
    make_user(api, database, "gone@example.com")
    gone = user_id(database, "gone@example.com")
    assert api.patch(f"/users/{gone}", {"is_active": False}).status_code == 200
    assert send(app, database, [gone], "Hello") == []


def test_the_email_preference_is_the_callers_own(app: Flask, api: Api, database: Database) -> None:
    clerk = make_user(api, database, "clerk@example.com")
    assert api.get("/notifications/preferences").get_json() == {
        "email": False,
        "email_available": False,
    }
    app.config["SMTP_HOST"] = "127.0.0.1"
    assert api.put("/notifications/preferences", {"email": True}).get_json() == {
        "email": True,
        "email_available": True,
    }
    assert clerk.get("/notifications/preferences").get_json()["email"] is False


def test_an_email_goes_through_a_real_smtp_server() -> None:
    with running_smtp_server() as inbox:
        settings = SmtpSettings(
            host="127.0.0.1", port=inbox.port, sender="trellis@example.com", starttls=False
        )
        payload = {"to": "clerk@example.com", "subject": "超过信用额度", "text": "Acme: 92 %"}
        deliver_email(payload, settings)
    [message] = inbox.messages
    assert message["To"] == "clerk@example.com" and message["From"] == "trellis@example.com"
    assert str(make_header(decode_header(message["Subject"]))) == "超过信用额度"
    assert "Acme: 92 %" in message.get_payload(decode=True).decode()


def test_an_unreachable_smtp_server_fails_the_delivery() -> None:
    settings = SmtpSettings(host="127.0.0.1", port=free_port(), sender="t@x", starttls=False)
    with pytest.raises(DeliveryFailed, match="was not sent"):
        deliver_email({"to": "a@example.com", "subject": "s", "text": "t"}, settings)
    with pytest.raises(DeliveryFailed, match="no SMTP server"):
        deliver_email({"to": "a@example.com", "subject": "s", "text": "t"}, None)


def test_a_notification_email_is_in_the_users_language_with_the_records_address(
    app: Flask, api: Api, database: Database
) -> None:
    make_user(api, database, "clerk@example.com", language="zh-CN")
    clerk_id = user_id(database, "clerk@example.com")
    app.config["BASE_URL"] = "https://trellis.example.com"
    title = {"en": "Credit limit passed", "zh-CN": "超过信用额度"}
    with app.app_context(), database.session() as session:
        [row] = notify(
            session, [clerk_id], title, {"en": "At 92 %", "zh-CN": "已达 92 %"}, ("dealer", 7)
        )
        user = session.get(User, clerk_id)
        assert user is not None
        payload = email_payload(user, row)
    assert payload["to"] == "clerk@example.com" and payload["subject"] == "超过信用额度"
    assert payload["text"] == "已达 92 %\n\nhttps://trellis.example.com/o/dealer/7"
    with running_smtp_server() as inbox:
        settings = SmtpSettings(host="127.0.0.1", port=inbox.port, sender="t@x", starttls=False)
        deliver_email(payload, settings)
    [message] = inbox.messages
    assert str(make_header(decode_header(message["Subject"]))) == "超过信用额度"
    assert "https://trellis.example.com/o/dealer/7" in message.get_payload(decode=True).decode()

"""The notification bell and page: the unread count in the top bar, the list in the user's
language with a link to the record, mark read (one, all), and the e-mail preference."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Flask

from tests.ui.conftest import SignIn, csrf_of, dealer_id
from trellis.extensions import database_of
from trellis.platform.runtime.models import Notification, User
from trellis.platform.runtime.notifications import notify

ADMIN = "admin@example.com"
EAST_SALES = "east.sales@example.com"
TITLE = {"en": "Credit limit nearly reached", "zh-CN": "信用额度即将用尽"}


def user_id(app: Flask, email: str) -> int:
    with database_of(app).session() as session:
        found = session.scalar(sa.select(User.id).where(User.email == email))
    assert found is not None
    return int(found)


def send(app: Flask, emails: list[str], title: object, link: tuple[str, int] | None) -> list[int]:
    ids = [user_id(app, email) for email in emails]
    with app.app_context(), database_of(app).session() as session:
        rows = notify(session, ids, title, {"en": "At 92 %", "zh-CN": "已达 92 %"}, link)
        session.commit()
        return [row.id for row in rows]


def test_the_bell_counts_unread_and_the_page_links_the_record(
    sign_in: SignIn, pack_app: Flask
) -> None:
    dealer = dealer_id(pack_app, "D-0101")
    [mine, theirs] = send(pack_app, [ADMIN, EAST_SALES], TITLE, ("dealer", dealer))
    send(pack_app, [ADMIN], "Nightly import finished", None)
    client = sign_in(ADMIN, language="en")

    home = client.get("/").get_data(as_text=True)
    assert 'data-unread="2"' in home and '<span class="count">2</span>' in home
    page = client.get("/notifications").get_data(as_text=True)
    assert "Credit limit nearly reached" in page and "At 92 %" in page
    assert "Nightly import finished" in page
    assert f'href="/o/dealer/{dealer}"' in page
    assert page.index("Nightly import finished") < page.index("Credit limit nearly reached")

    token = csrf_of(page)
    opened = client.post(f"/notifications/{mine}/read", data={"csrf_token": token, "open": "1"})
    assert opened.status_code == 302 and opened.headers["Location"] == f"/o/dealer/{dealer}"
    assert 'data-unread="1"' in client.get("/").get_data(as_text=True)
    # Another user's notification is not found, and stays unread.
    assert (
        client.post(f"/notifications/{theirs}/read", data={"csrf_token": token}).status_code == 404
    )
    # Without the form's token nothing changes.
    assert client.post("/notifications/read-all").status_code == 400
    done = client.post("/notifications/read-all", data={"csrf_token": token}, follow_redirects=True)
    assert "1 notification marked read." in done.get_data(as_text=True)
    assert 'data-unread="0"' in done.get_data(as_text=True)
    with database_of(pack_app).session() as session:
        assert session.get(Notification, theirs).read_at is None  # type: ignore[union-attr]


def test_the_page_speaks_the_users_language(sign_in: SignIn, pack_app: Flask) -> None:
    send(pack_app, [EAST_SALES], TITLE, None)
    client = sign_in(EAST_SALES, language="zh-CN")
    page = client.get("/notifications").get_data(as_text=True)
    assert "信用额度即将用尽" in page and "已达 92 %" in page
    assert "Credit limit nearly reached" not in page


def test_the_email_preference_is_offered_when_smtp_is_configured(
    sign_in: SignIn, pack_app: Flask
) -> None:
    client = sign_in(EAST_SALES, language="en")
    page = client.get("/notifications").get_data(as_text=True)
    assert "No e-mail server is configured" in page and 'name="email"' not in page
    pack_app.config["SMTP_HOST"] = "127.0.0.1"
    page = client.get("/notifications").get_data(as_text=True)
    assert 'name="email"' in page
    answer = client.post(
        "/notifications/preferences",
        data={"csrf_token": csrf_of(page), "email": "true"},
        follow_redirects=True,
    )
    assert "Notifications will also be e-mailed to you." in answer.get_data(as_text=True)
    with database_of(pack_app).session() as session:
        user = session.get(User, user_id(pack_app, EAST_SALES))
        assert user is not None and user.email_notifications is True


def test_signed_out_visitors_are_sent_to_sign_in(pack_app: Flask) -> None:
    client = pack_app.test_client()
    answer = client.get("/notifications")
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]

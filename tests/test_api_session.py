"""A signed-in browser may use /api/v1 with its session cookie; its writes need the CSRF header.

Runs on SQLite and PostgreSQL (``db_url``). Sign-in goes through the real ``/login`` page
with the test client, as a browser would.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api
from tests.platform.runtime.helpers import error_of
from trellis.extensions import Database
from trellis.platform.runtime.identity import Identity
from trellis.platform.runtime.identity.sessions import authenticate_session, session_stamp
from trellis.platform.runtime.identity.tokens import authenticate_token
from trellis.platform.runtime.models import ApiToken, User

PASSWORD = "a first password"


def page_csrf(browser: FlaskClient, path: str = "/") -> str:
    """The CSRF token a page hands its scripts and forms."""
    match = re.search(r'name="csrf-token" content="([^"]+)"', browser.get(path).text)
    assert match is not None
    return match.group(1)


def signed_in(app: Flask, email: str, password: str) -> FlaskClient:
    browser = app.test_client()
    form_token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").text)
    assert form_token is not None
    response = browser.post(
        "/login", data={"email": email, "password": password, "csrf_token": form_token.group(1)}
    )
    assert response.status_code == 302, response.text
    return browser


def token_count(database: Database) -> int:
    with database.session() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) or 0


def new_user(api: Api, email: str) -> dict[str, Any]:
    response = api.post("/users", {"email": email, "password": PASSWORD, "name": "Sam"})
    assert response.status_code == 201, response.get_json()
    user: dict[str, Any] = response.get_json()
    return user


@pytest.fixture
def browser(app: Flask) -> FlaskClient:
    return signed_in(app, ADMIN_EMAIL, ADMIN_PASSWORD)


def test_a_token_and_a_session_give_one_identity(database: Database, admin_token: str) -> None:
    """Both ways to sign in read the same facts into the same type; only the token differs."""
    with database.session() as session:
        user = session.scalar(sa.select(User).where(User.email == ADMIN_EMAIL))
        assert user is not None
        stamp = session_stamp(user.password_changed_at, user.session_epoch)
        by_session = authenticate_session(session, user.id, stamp)
        by_token = authenticate_token(session, f"Bearer {admin_token}")
    assert type(by_token) is type(by_session) is Identity
    assert by_session.token_id is None and not by_session.needs_touch
    assert by_token.token_id is not None and by_token.needs_touch  # never used yet
    assert dataclasses.replace(by_token, token_id=None, needs_touch=False) == by_session
    assert (by_session.user_id, by_session.email, by_session.is_admin) == (
        user.id,
        ADMIN_EMAIL,
        True,
    )


def test_a_session_reads_the_api(browser: FlaskClient) -> None:
    response = browser.get("/api/v1/me")
    assert response.status_code == 200, response.get_json()
    me = response.get_json()
    assert me["email"] == ADMIN_EMAIL and me["is_admin"] is True
    assert browser.get("/api/v1/users").status_code == 200  # an administrator's right


def test_a_session_user_has_their_own_rights_only(app: Flask, api: Api) -> None:
    new_user(api, "sam@example.com")
    sam = signed_in(app, "sam@example.com", PASSWORD)
    me = sam.get("/api/v1/me").get_json()
    assert (me["email"], me["is_admin"], me["roles"]) == ("sam@example.com", False, [])
    error_of(sam.get("/api/v1/users"), 403, "forbidden")


def test_session_writes_need_the_pages_csrf_token(browser: FlaskClient, database: Database) -> None:
    before = token_count(database)
    error_of(browser.post("/api/v1/tokens", json={"name": "x"}), 403, "csrf_failed")
    forged = {"X-CSRFToken": "forged"}
    error_of(browser.post("/api/v1/tokens", json={"name": "x"}, headers=forged), 403, "csrf_failed")
    assert token_count(database) == before

    good = {"X-CSRFToken": page_csrf(browser)}
    response = browser.post("/api/v1/tokens", json={"name": "from the page"}, headers=good)
    assert response.status_code == 201, response.get_json()
    assert token_count(database) == before + 1
    token_id = response.get_json()["id"]
    error_of(browser.delete(f"/api/v1/tokens/{token_id}"), 403, "csrf_failed")
    assert browser.delete(f"/api/v1/tokens/{token_id}", headers=good).status_code == 204


def test_another_sessions_csrf_token_does_not_pass(
    app: Flask, browser: FlaskClient, database: Database
) -> None:
    other = signed_in(app, ADMIN_EMAIL, ADMIN_PASSWORD)
    foreign = {"X-CSRFToken": page_csrf(other)}
    before = token_count(database)
    error_of(browser.post("/api/v1/tokens", json={"name": "x"}, headers=foreign), 403)
    assert token_count(database) == before


def test_bearer_tokens_stay_csrf_exempt_and_win_over_the_cookie(
    browser: FlaskClient, admin_token: str
) -> None:
    bearer = {"Authorization": f"Bearer {admin_token}"}
    response = browser.post("/api/v1/tokens", json={"name": "script"}, headers=bearer)
    assert response.status_code == 201, response.get_json()
    # A header that is sent is the identity, even beside a valid session cookie.
    error_of(browser.get("/api/v1/me", headers={"Authorization": "Bearer trl_x"}), 401)


def test_a_deactivated_users_session_ends(app: Flask, api: Api) -> None:
    user = new_user(api, "gone@example.com")
    gone = signed_in(app, "gone@example.com", PASSWORD)
    assert gone.get("/api/v1/me").status_code == 200
    assert api.patch(f"/users/{user['id']}", {"is_active": False}).status_code == 200
    error_of(gone.get("/api/v1/me"), 401, "unauthenticated")
    error_of(gone.post("/api/v1/tokens", json={}, headers={"X-CSRFToken": "x"}), 401)


def test_a_password_change_ends_other_sessions(app: Flask, api: Api) -> None:
    new_user(api, "pat@example.com")
    laptop = signed_in(app, "pat@example.com", PASSWORD)
    phone = signed_in(app, "pat@example.com", PASSWORD)
    form = {
        "current_password": PASSWORD,
        "new_password": "a second password",
        "confirm_password": "a second password",
        "csrf_token": re.findall(
            r'name="csrf_token" value="([^"]+)"', laptop.get("/password").text
        )[0],
    }
    assert laptop.post("/password", data=form).status_code == 302
    assert laptop.get("/api/v1/me").status_code == 200  # the session that changed it lives on
    error_of(phone.get("/api/v1/me"), 401, "unauthenticated")


def test_a_signed_out_cookie_is_refused(app: Flask, browser: FlaskClient) -> None:
    cookie = browser.get_cookie("session")
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie("session", cookie.value)
    assert thief.get("/api/v1/me").status_code == 200
    form = re.findall(r'name="csrf_token" value="([^"]+)"', browser.get("/").text)[0]
    assert browser.post("/logout", data={"csrf_token": form}).status_code == 302
    error_of(thief.get("/api/v1/me"), 401, "unauthenticated")


def test_without_token_or_session_the_api_asks_for_a_token(client: FlaskClient) -> None:
    error_of(client.get("/api/v1/me"), 401, "unauthenticated")
    error_of(client.post("/api/v1/tokens", json={"name": "x"}), 401, "unauthenticated")

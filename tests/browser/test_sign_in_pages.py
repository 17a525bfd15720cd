"""The pages for people in a real browser (Chromium via Playwright), on each database.

Sign-in, the start page, change password and sign-out over real HTTP: what a person
sees, what the session cookie looks like, and that forms without their CSRF token,
off-site ``next`` targets and locked accounts get nowhere.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.browser.conftest import (
    NewPage,
    Page,
    flash_text,
    path_of,
    sign_in,
    sign_out,
    submit,
)
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from trellis.admin_ui import SESSION_LIFETIME
from trellis.extensions import Database, database_of
from trellis.platform.runtime.identity import LOCK_AFTER, UserService
from trellis.platform.runtime.identity.passwords import verify_password
from trellis.platform.runtime.models import User

WRONG = "not the password"
SECOND_EMAIL = "zhang.san@example.com"
SECOND_PASSWORD = "another long password"
SECOND_NAME = "张三 <b>Zhang</b>"  # markup in a name must show as text


def assert_signed_out(page: Page, base: str) -> None:
    page.goto(base + "/")
    assert path_of(page) == "/login?next=/"
    assert page.get_by_role("button", name="Sign in").is_visible()
    assert page.locator("summary.who").count() == 0


def session_cookie(page: Page) -> dict[str, Any] | None:
    found = [c for c in page.context.cookies() if c["name"] == "session"]
    assert len(found) <= 1
    return found[0] if found else None


def add_user(app: Flask, email: str, password: str, name: str) -> int:
    with database_of(app).session() as session:
        user = UserService(session, app.extensions["trellis.registry"], None).create(
            {"email": email, "password": password, "name": name}
        )
        session.commit()
        return user.id


def password_is(database: Database, email: str, password: str) -> bool:
    with database.session() as session:
        user = session.scalar(sa.select(User).where(User.email == email))
        assert user is not None
        return verify_password(user, password)


# --- sign-in ----------------------------------------------------------------------------


def test_sign_in_page_is_bilingual_and_refuses_a_wrong_password(
    new_page: NewPage, live_server: str, tmp_path: Path
) -> None:
    page = new_page()
    response = page.goto(live_server + "/")
    assert response is not None and response.status == 200
    assert response.request.redirected_from is not None  # / answered with a redirect
    assert path_of(page) == "/login?next=/"
    assert page.title() == "Sign in — Trellis"
    assert page.get_by_role("heading", name="Sign in").is_visible()
    for label in ("E-mail", "Password"):
        assert page.get_by_label(label).is_visible()
    assert page.get_by_label("Password", exact=True).get_attribute("type") == "password"
    assert page.locator("summary.who").count() == 0  # nobody is signed in
    page.screenshot(path=str(tmp_path / "sign-in.png"), full_page=True)

    refused = sign_in(page, live_server, ADMIN_EMAIL, WRONG, path="/login?next=/")
    assert refused.status == 401
    assert path_of(page) == "/login"  # still the sign-in page
    assert flash_text(page) == "Wrong e-mail or password."
    assert page.get_by_label("E-mail").input_value() == ADMIN_EMAIL
    assert page.get_by_label("Password", exact=True).input_value() == ""
    # An unknown e-mail gets the very same answer: whether an account exists does not leak.
    unknown = sign_in(page, live_server, "nobody@example.com", WRONG)
    assert unknown.status == 401
    assert flash_text(page) == "Wrong e-mail or password."
    assert_signed_out(page, live_server)


def test_admin_signs_in_sees_the_start_page_and_signs_out(
    new_page: NewPage, live_server: str, tmp_path: Path
) -> None:
    page = new_page()
    page.goto(live_server + "/")
    before = time.time()
    answered = sign_in(page, live_server, ADMIN_EMAIL, ADMIN_PASSWORD, path="/login?next=/")
    assert answered.status == 302
    assert page.url == live_server + "/"
    assert page.title() == "Home — Trellis"
    assert page.locator("main h1").inner_text() == "Welcome, admin"
    assert page.locator("summary.who").inner_text() == "admin"
    assert str(page.locator(".user-menu .dropdown").text_content()).strip().startswith(ADMIN_EMAIL)
    assert page.get_by_role("link", name="Orders").count() == 0  # no objects installed here
    page.screenshot(path=str(tmp_path / "start.png"), full_page=True)

    cookie = session_cookie(page)
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # plain HTTP here; TRELLIS_SESSION_COOKIE_SECURE sets it
    lifetime = cookie["expires"] - before
    assert SESSION_LIFETIME.total_seconds() - 120 < lifetime < SESSION_LIFETIME.total_seconds() + 5
    assert "session=" not in page.evaluate("document.cookie")  # scripts cannot read it

    # Signed in, /login sends you on instead of asking again.
    page.goto(live_server + "/login")
    assert page.url == live_server + "/"

    sign_out(page)
    page.wait_for_url(live_server + "/login")
    assert flash_text(page) == "Signed out."
    assert page.locator("summary.who").count() == 0
    assert_signed_out(page, live_server)


@pytest.fixture
def database_time_zone(app: Flask, db_url: str, database: Database) -> Iterator[None]:
    """On PostgreSQL, a database whose time zone is not UTC (as a server in China may be)."""
    if not db_url.startswith("postgresql"):
        yield
        return
    name = sa.make_url(db_url).database

    def alter(setting: str) -> None:
        with database.engine.connect() as connection:
            connection.execute(sa.text(f'ALTER DATABASE "{name}" {setting}'))
            connection.commit()
        database.engine.dispose()  # new connections take the setting

    alter("SET timezone TO 'Asia/Shanghai'")
    with database.engine.connect() as connection:
        assert connection.scalar(sa.text("SHOW timezone")) == "Asia/Shanghai"
    try:
        yield
    finally:
        alter("RESET timezone")


@pytest.mark.usefixtures("database_time_zone")
def test_change_password(
    app: Flask, new_page: NewPage, live_server: str, database: Database
) -> None:
    page = new_page()
    sign_in(page, live_server, ADMIN_EMAIL, ADMIN_PASSWORD)
    elsewhere = new_page()  # the same user, signed in in another browser
    sign_in(elsewhere, live_server, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert elsewhere.url == live_server + "/"
    new_password = "a brand new password"

    def change(current: str, new: str, confirm: str) -> Any:
        if path_of(page) != "/password":
            page.locator("summary.who").click()
            page.get_by_role("link", name="Change password").click()
            page.wait_for_url(live_server + "/password")
        assert page.get_by_role("heading", name="Change password").is_visible()
        page.get_by_label("Current password").fill(current)
        page.get_by_label("New password", exact=True).fill(new)
        page.get_by_label("Repeat new password").fill(confirm)
        return submit(page, "/password", "Change")

    wrong = change(WRONG, new_password, new_password)
    assert wrong.status == 400 and path_of(page) == "/password"
    assert flash_text(page) == "The current password is wrong."

    differ = change(ADMIN_PASSWORD, new_password, new_password + "!")
    assert differ.status == 400 and path_of(page) == "/password"
    assert flash_text(page) == "The new passwords differ."
    assert password_is(database, ADMIN_EMAIL, ADMIN_PASSWORD)  # nothing changed so far

    done = change(ADMIN_PASSWORD, new_password, new_password)
    assert done.status == 302
    assert page.url == live_server + "/"
    assert flash_text(page) == "Password changed."
    assert password_is(database, ADMIN_EMAIL, new_password)
    page.reload()  # this browser stays signed in ...
    assert page.url == live_server + "/" and page.locator("summary.who").is_visible()
    assert_signed_out(elsewhere, live_server)  # ... the other one's session has ended

    sign_out(page)
    page.wait_for_url(live_server + "/login")
    old = sign_in(page, live_server, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert old.status == 401 and path_of(page) == "/login"
    new = sign_in(page, live_server, ADMIN_EMAIL, new_password)
    assert new.status == 302 and page.url == live_server + "/"
    assert page.locator("main h1").inner_text() == "Welcome, admin"


def test_a_locked_account_cannot_sign_in_even_with_its_password(
    new_page: NewPage, live_server: str, database: Database
) -> None:
    with database.session() as session:
        session.execute(
            sa.update(User).where(User.email == ADMIN_EMAIL).values(failed_logins=LOCK_AFTER - 1)
        )
        session.commit()
    page = new_page()
    assert sign_in(page, live_server, ADMIN_EMAIL, WRONG).status == 401  # the last straw
    locked = sign_in(page, live_server, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert locked.status == 429 and path_of(page) == "/login"
    assert re.fullmatch(
        r"Too many failed sign-ins: the account is locked; try again in \d+ s\.",
        flash_text(page),
    ), flash_text(page)
    assert_signed_out(page, live_server)


# --- forms without their CSRF token -----------------------------------------------------


def test_forms_without_their_csrf_token_are_refused(
    new_page: NewPage, live_server: str, database: Database
) -> None:
    page = new_page()
    page.goto(live_server + "/login")
    credentials = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}

    # Posted from a script, with the browser's cookies but no token.
    bare = page.request.post(live_server + "/login", form=credentials, max_redirects=0)
    assert bare.status == 400
    assert "The CSRF token is missing." in bare.text()
    forged = page.request.post(
        live_server + "/login", form={**credentials, "csrf_token": "forged"}, max_redirects=0
    )
    assert forged.status == 400 and "Form expired" in forged.text()
    # A real token, but minted for another browser's session.
    other = new_page()
    other.goto(live_server + "/login")
    foreign = other.locator("input[name=csrf_token]").input_value()
    stolen = page.request.post(
        live_server + "/login", form={**credentials, "csrf_token": foreign}, max_redirects=0
    )
    assert stolen.status == 400
    assert_signed_out(page, live_server)

    # The page's own form with its hidden token removed.
    page.goto(live_server + "/login")
    page.evaluate("document.querySelector('input[name=csrf_token]').remove()")
    refused = sign_in(page, live_server, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert refused.status == 400
    assert page.get_by_role("heading", name="Form expired").is_visible()
    assert "Reload the page and try again." in page.inner_text("main")
    assert_signed_out(page, live_server)

    # Signed in: sign-out and change password need their token too.
    assert sign_in(page, live_server, ADMIN_EMAIL, ADMIN_PASSWORD).status == 302
    out = page.request.post(live_server + "/logout", max_redirects=0)
    assert out.status == 400
    change = page.request.post(
        live_server + "/password",
        form={
            "current_password": ADMIN_PASSWORD,
            "new_password": "changed by a forger",
            "confirm_password": "changed by a forger",
        },
        max_redirects=0,
    )
    assert change.status == 400
    assert password_is(database, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.goto(live_server + "/")
    assert page.url == live_server + "/"  # still signed in: the forged sign-out did nothing
    assert page.locator("summary.who").inner_text() == "admin"


# --- where sign-in leads ------------------------------------------------------------------


OFF_SITE_TARGETS = (
    "//evil.example",
    "/\\evil.example",  # browsers read "\" as "/"
    "/\\/evil.example",
    "/\t/evil.example",  # browsers drop tabs
    "https://evil.example/",
    "https:evil.example",
    "\\\\evil.example",
    "//evil.example/",
    "javascript:alert(1)",
)


def test_next_never_leaves_the_site(new_page: NewPage, live_server: str) -> None:
    # Through the sign-in form's hidden field (signed out each time) ...
    page = new_page()
    for target in OFF_SITE_TARGETS[:4]:
        page.context.clear_cookies()
        page.goto(live_server + "/login")
        page.locator("input[name=next]").evaluate("(input, value) => input.value = value", target)
        assert sign_in(page, live_server, ADMIN_EMAIL, ADMIN_PASSWORD).status == 302
        assert page.url == live_server + "/", (target, page.url)
        assert page.off_site == [], target
        assert page.locator("summary.who").inner_text() == "admin"
    # ... and through the address bar of a signed-in browser, which /login sends on.
    for target in OFF_SITE_TARGETS:
        page.goto(live_server + "/login?" + urlencode({"next": target}))
        assert page.url == live_server + "/", (target, page.url)
        assert page.off_site == [], target


def test_next_from_the_address_bar(new_page: NewPage, live_server: str) -> None:
    page = new_page()
    page.goto(live_server + "/login?next=//evil.example")
    sign_in(page, live_server, ADMIN_EMAIL, ADMIN_PASSWORD, path="/login?next=//evil.example")
    assert page.url == live_server + "/"
    assert page.off_site == []
    # A same-site target is honoured: /password asks for sign-in, then comes back.
    sign_out(page)
    page.wait_for_url(live_server + "/login")
    page.goto(live_server + "/password")
    assert path_of(page) == "/login?next=/password"
    sign_in(page, live_server, ADMIN_EMAIL, ADMIN_PASSWORD, path="/login?next=/password")
    assert page.url == live_server + "/password"
    # Signed in already, an off-site next on /login is ignored too.
    page.goto(live_server + "/login?next=https://evil.example/")
    assert page.url == live_server + "/"
    assert page.off_site == []


# --- two people at once -------------------------------------------------------------------


def test_two_users_at_once_each_see_their_own_name(
    app: Flask, new_page: NewPage, live_server: str, database: Database
) -> None:
    second_id = add_user(app, SECOND_EMAIL, SECOND_PASSWORD, SECOND_NAME)
    admin, second = new_page(), new_page()
    assert sign_in(admin, live_server, ADMIN_EMAIL, ADMIN_PASSWORD).status == 302
    assert sign_in(second, live_server, SECOND_EMAIL, SECOND_PASSWORD).status == 302
    for _ in range(2):  # interleaved, each with its own cookie
        for page, name, email in (
            (admin, "admin", ADMIN_EMAIL),
            (second, SECOND_NAME, SECOND_EMAIL),
        ):
            page.reload()
            assert page.locator("main h1").inner_text() == f"Welcome, {name}"
            assert page.locator("summary.who").inner_text() == name
            assert email in str(page.locator(".user-menu .dropdown").text_content()).strip()
    assert second.locator("b").count() == 0  # the name's markup stayed text
    assert second.get_by_role("heading", name="Setup").count() == 0  # not an administrator
    cookies = [session_cookie(page) for page in (admin, second)]
    assert all(cookies) and cookies[0] != cookies[1]

    # Deactivating a user ends their session at once; the other one's goes on.
    with database.session() as session:
        UserService(session, app.extensions["trellis.registry"], None).update(
            second_id, {"is_active": False}
        )
        session.commit()
    assert_signed_out(second, live_server)
    refused = sign_in(second, live_server, SECOND_EMAIL, SECOND_PASSWORD)
    assert refused.status == 401
    admin.reload()
    assert admin.locator("summary.who").inner_text() == "admin"

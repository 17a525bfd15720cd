"""Sign-out ends the session on the server: a copy of the cookie is worthless afterwards."""

from __future__ import annotations

import re

from flask import Flask

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match is not None
    return match.group(1)


def test_signed_out_cookie_cannot_be_replayed(app: Flask) -> None:
    browser = app.test_client()
    token = _csrf(browser.get("/login").text)
    signed_in = browser.post(
        "/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": token}
    )
    assert signed_in.status_code == 302
    cookie = browser.get_cookie("session")
    assert cookie is not None
    assert browser.get("/").status_code == 200

    thief = app.test_client()
    thief.set_cookie("session", cookie.value)
    assert thief.get("/").status_code == 200  # the copy works while the session lives

    assert (
        browser.post("/logout", data={"csrf_token": _csrf(browser.get("/").text)}).status_code
        == 302
    )
    replay = thief.get("/")
    assert replay.status_code == 302 and "/login" in replay.headers["Location"]

    # Signing in again gives a new, working session.
    token = _csrf(browser.get("/login").text)
    browser.post(
        "/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": token}
    )
    assert browser.get("/").status_code == 200

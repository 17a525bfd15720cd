"""Pages answer errors with the app's own page and the right status; /api/ answers JSON."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.platform.runtime.helpers import error_of


def assert_app_page(response: TestResponse, status: int, title: str) -> str:
    """The app's layout (stylesheet, brand link), the title, the status and a link home."""
    assert response.status_code == status
    assert response.mimetype == "text/html"
    html = response.text
    assert "/ui/static/trellis.css" in html and 'class="brand"' in html
    assert f"<h1>{title}" in html and f">{status}<" in html
    assert '<a href="/">Back to the start page' in html
    assert "Not Found</h1>" not in html and "werkzeug" not in html.lower()
    return html


def test_an_unknown_page_is_the_apps_404(client: FlaskClient) -> None:
    html = assert_app_page(client.get("/no/such/page"), 404, "Page not found")
    assert "not found" in html.lower()
    assert_app_page(client.get("/ui/static/missing.css"), 404, "Page not found")


def test_a_wrong_method_on_a_page_is_the_apps_405(client: FlaskClient) -> None:
    response = client.delete("/login")
    assert_app_page(response, 405, "Method not allowed")
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_the_error_page_shows_who_is_signed_in(app: Flask) -> None:
    browser = app.test_client()
    form = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").text)
    assert form is not None
    browser.post(
        "/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": form[1]}
    )
    html = assert_app_page(browser.get("/nowhere"), 404, "Page not found")
    assert ADMIN_EMAIL in html and "Sign out" in html


def test_an_unexpected_failure_on_a_page_is_the_apps_500(app: Flask) -> None:
    def broken() -> str:
        raise RuntimeError("secret detail")

    app.add_url_rule("/broken", view_func=broken)
    html = assert_app_page(app.test_client().get("/broken"), 500, "Something went wrong")
    assert "secret detail" not in html


def test_under_api_errors_stay_json(client: FlaskClient, admin_token: str) -> None:
    error_of(client.get("/api/v1/no/such/thing"), 404, "not_found")
    bearer = {"Authorization": f"Bearer {admin_token}"}
    response = client.delete("/api/v1/me", headers=bearer)
    error_of(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]
    error_of(client.get("/api/nothing"), 404, "not_found")

"""Password hashes: werkzeug's scrypt at n=2¹⁵ by default; ``TRELLIS_PASSWORD_SCRYPT_N``
changes the cost of new hashes only (the suite runs at n=128, tests/conftest.py), and a bad
value stops the app from starting."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import Api
from trellis import config, create_app
from trellis.extensions import Database
from trellis.platform.runtime.identity.passwords import hash_password
from trellis.platform.runtime.models import User

VARIABLE = "TRELLIS_PASSWORD_SCRYPT_N"


def stored_hash(database: Database, email: str) -> str:
    with database.session() as session:
        return str(session.scalar(sa.select(User.password_hash).where(User.email == email)))


def test_the_default_is_werkzeugs_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VARIABLE)
    assert config.password_scrypt_n() == 2**15
    assert hash_password("a long test password").startswith("scrypt:32768:8:1$")


@pytest.mark.parametrize("cost", ["128", "1024"])
def test_the_setting_sets_the_cost_of_new_hashes(
    monkeypatch: pytest.MonkeyPatch, cost: str
) -> None:
    monkeypatch.setenv(VARIABLE, cost)
    assert hash_password("a long test password").startswith(f"scrypt:{cost}:8:1$")


@pytest.mark.parametrize(
    "raw", ["0", "1", "64", "129", "1000", "2097152", "-128", "128.0", "x", "１２８"]
)
def test_a_bad_setting_stops_the_app_from_starting(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv(VARIABLE, raw)
    message = f"{VARIABLE} must be a power of two from 128 to 1048576, not {raw!r}"
    with pytest.raises(ValueError) as refused:
        create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "test", "TESTING": True})
    assert str(refused.value) == message


def sign_in(app: Flask, email: str, password: str) -> int:
    """The status of a sign-in through the /login form, CSRF token and all."""
    client = app.test_client()
    form = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert form
    data = {"csrf_token": form.group(1), "email": email, "password": password}
    return client.post("/login", data=data).status_code


def test_a_hash_is_checked_at_its_own_cost_whatever_the_setting_is_now(
    app: Flask, api: Api, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(VARIABLE)  # made at the production cost …
    body = {"email": "costly@example.com", "password": "first password", "roles": []}
    assert api.post("/users", body).status_code == 201
    assert stored_hash(database, "costly@example.com").startswith("scrypt:32768:8:1$")
    monkeypatch.setenv(VARIABLE, "128")  # … checked under another
    assert sign_in(app, "costly@example.com", "first password!") == 401
    assert sign_in(app, "costly@example.com", "first password") == 302

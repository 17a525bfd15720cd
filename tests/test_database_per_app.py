"""Each app owns its database: apps made in one process never share an engine.

Tests (and a process serving two configurations) create many apps; each must keep
answering from the database it was made with, whichever was created last.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import _reset_pg, migrated_app
from tests.factories import definition, field
from trellis.extensions import database_of, db
from trellis.platform.runtime.identity.tokens import issue_token
from trellis.platform.runtime.models import User


def _url(kind: str, name: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / f'{name}.db'}"
    url: str = request.getfixturevalue("pg_url")
    _reset_pg(url)
    return url


def _made(url: str, name: str) -> tuple[Flask, str]:
    """An app on ``url`` whose admin is ``<name>@example.com``, and that admin's token."""
    email = f"{name}@example.com"
    app = migrated_app(url, email)
    with database_of(app).session() as session:
        token = issue_token(session, email, name="tests")
        session.commit()
    return app, token


@pytest.mark.parametrize(
    "kinds",
    [("sqlite", "sqlite"), ("sqlite", "postgresql"), ("postgresql", "sqlite")],
    ids=["two-sqlite-files", "sqlite-first", "postgresql-first"],
)
def test_two_apps_each_use_their_own_database(
    kinds: tuple[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    names = ("first", "second")
    urls = [_url(kind, name, tmp_path, request) for kind, name in zip(kinds, names, strict=True)]
    apps = [_made(url, name) for url, name in zip(urls, names, strict=True)]
    try:
        for (app, token), name in zip(apps, names, strict=True):
            headers = {"Authorization": f"Bearer {token}"}
            made = definition(f"{name}_thing", {"title": field("text")})
            client = app.test_client()
            assert client.post("/api/v1/objects", json=made, headers=headers).status_code == 201
        for (app, token), name, url in zip(apps, names, urls, strict=True):
            headers = {"Authorization": f"Bearer {token}"}
            me = app.test_client().get("/api/v1/me", headers=headers)
            assert me.status_code == 200, me.get_json()
            assert me.get_json()["email"] == f"{name}@example.com"
            listed = app.test_client().get("/api/v1/objects", headers=headers).get_json()
            assert [item["name"] for item in listed["items"]] == [f"{name}_thing"]
            with app.app_context():  # the module-level ``db`` follows the current app
                assert db.engine is database_of(app).engine
                assert db.engine.url.render_as_string(hide_password=False) == url
                with db.session() as session:
                    assert session.scalars(sa.select(User.email)).all() == [f"{name}@example.com"]
    finally:
        for app, _ in apps:
            database_of(app).engine.dispose()


def test_db_outside_an_app_context_refuses_clearly() -> None:
    with pytest.raises(RuntimeError, match="application context"):
        db.session()

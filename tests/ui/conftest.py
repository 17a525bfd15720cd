"""Pages tested through Flask's client: the channel pack with its demo data, signed-in users."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from trellis.extensions import database_of
from trellis.platform.runtime.identity import UserService
from trellis.platform.runtime.models import User
from trellis.platform.runtime.packs import install_pack, resolve_pack
from trellis.platform.runtime.workflow.documents import WorkflowService

PASSWORD = "a long test password"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
SignIn = Callable[..., FlaskClient]


def install_channel_pack(app: Flask) -> None:
    """The channel pack and its demo data in ``app``; every user's password is ``PASSWORD``.

    (The ``channel_demo_signed`` database template of tests/conftest.py, which ``pack_app``
    starts from, is made the same way.)
    """
    registry = app.extensions["trellis.registry"]
    with database_of(app).session() as session:
        install_pack(
            session, registry, resolve_pack("channel_pack"), author_id=None, with_demo=True
        )
        session.commit()
    set_every_password(app)


def set_every_password(app: Flask) -> None:
    """Every user's password ``PASSWORD``, set as an administrator would."""
    registry = app.extensions["trellis.registry"]
    with database_of(app).session() as session:
        users = UserService(session, registry, None)
        for user_id in session.scalars(sa.select(User.id)):
            users.update(user_id, {"password": PASSWORD})
        session.commit()


def drop_workflow(app: Flask, name: str) -> None:
    """Delete a pack's workflow: tests of rules that read the status write it as a plain
    field (what moves the status is tests/platform/runtime/test_workflows.py's subject)."""
    registry = app.extensions["trellis.registry"]
    with database_of(app).session() as session:
        WorkflowService(session, registry, None).delete(name)
        session.commit()
    registry.invalidate()


@pytest.fixture
def pack_app(app: Flask, db_template: str | None) -> Flask:
    """The app with the channel pack and its demo data; every demo user's password is known.

    Its database is a copy of the ``channel_demo_signed`` template (``db_template``).
    """
    if db_template != "channel_demo_signed":  # a module chose another start
        install_channel_pack(app)
    return app


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, html[:500]
    return match.group(1)


@pytest.fixture
def sign_in(pack_app: Flask) -> SignIn:
    """A client signed in through the form as ``email`` (``language`` set first, if given)."""

    def signed_in(email: str, language: str | None = None) -> FlaskClient:
        if language is not None:
            with database_of(pack_app).session() as session:
                session.execute(
                    sa.update(User).where(User.email == email).values(language=language)
                )
                session.commit()
        client = pack_app.test_client()
        token = csrf_of(client.get("/login").get_data(as_text=True))
        answer = client.post(
            "/login", data={"csrf_token": token, "email": email, "password": PASSWORD}
        )
        assert answer.status_code == 302, answer.get_data(as_text=True)[:300]
        return client

    return signed_in


def ids_of(app: Flask, object_name: str, **where: Any) -> list[int]:
    """Record ids straight from the table (what the pages must agree with)."""
    meta = app.extensions["trellis.registry"].get(object_name)
    with database_of(app).session() as session:
        meta_table = meta.table
        statement = sa.select(meta_table.c.id).where(meta_table.c.deleted_at.is_(None))
        for name, value in where.items():
            statement = statement.where(meta_table.c[name] == value)
        return list(session.scalars(statement.order_by(meta_table.c.id)))


def dealer_id(app: Flask, code: str) -> int:
    found = ids_of(app, "dealer", code=code)
    assert len(found) == 1
    return found[0]

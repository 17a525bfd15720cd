"""Shared fixtures: ``app``, ``client``, ``api`` (an authenticated client), ``db_url``.

Storage, record and API tests run on SQLite and on PostgreSQL: the ``db_url``
fixture is parametrised over both. Each test gets an empty database — a fresh
SQLite file, or a PostgreSQL schema dropped and recreated — migrated to head.

PostgreSQL is expected on 127.0.0.1:5432 with trust auth (``TRELLIS_TEST_PG_URL``
overrides). Where it is missing, its tests skip locally and fail under CI.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from trellis import create_app
from trellis.extensions import Database, database_of
from trellis.platform.runtime.bootstrap import init_database
from trellis.platform.runtime.identity.tokens import issue_token

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "correct horse battery"
PG_ADMIN_URL = os.environ.get(
    "TRELLIS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# Every test signs in from 127.0.0.1: the per-address sign-in limit would trip the suite.
# Tests of that limit set their own; served apps (subprocesses) inherit this.
os.environ["TRELLIS_LOGIN_RATE_LIMIT"] = "100000 per minute"


def require_service(name: str, problem: str) -> None:
    """Skip locally, fail under CI: CI must never pass by skipping what it could not reach."""
    message = f"{name} is not available: {problem}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _pg_database_url(worker: str) -> str:
    # One database per test run and xdist worker, so concurrent runs never meet.
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", f"{os.getpid():x}")[:8]
    name = f"trellis_test_{run}_{worker}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            exists = connection.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            if not exists:
                connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        require_service("PostgreSQL", str(exc.orig).strip().splitlines()[0])
    finally:
        admin.dispose()
    return sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_url(worker_id: str) -> Iterator[str]:
    url = _pg_database_url(worker_id)
    yield url
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(
            sa.text(f'DROP DATABASE IF EXISTS "{sa.make_url(url).database}" WITH (FORCE)')
        )
    admin.dispose()


def _reset_pg(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """An empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'trellis.db'}"
    url: str = request.getfixturevalue("pg_url")
    _reset_pg(url)
    return url


def migrated_app(url: str, admin_email: str = ADMIN_EMAIL) -> Flask:
    """An app on ``url``, migrated to head, with the administrator ``admin_email``."""
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "test-secret", "TESTING": True})
    database = database_of(app)
    with database.session() as session:
        init_database(database.engine, session, admin_email, ADMIN_PASSWORD)
    return app


@pytest.fixture
def app(db_url: str, tmp_path: Any) -> Iterator[Flask]:
    app = migrated_app(db_url)
    database = database_of(app)
    # No app context stays pushed: each request gets its own, and so its own ``g``, as in
    # production (a shared ``g`` would, for one, serve one session's CSRF token to another).
    # Tests reach the app's database through the ``database`` fixture instead.
    yield app
    database.engine.dispose()


@pytest.fixture
def database(app: Flask) -> Database:
    """The test app's own database (engine and sessions), usable outside a request."""
    return database_of(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def admin_token(database: Database) -> str:
    with database.session() as session:
        token = issue_token(session, ADMIN_EMAIL, name="tests")
        session.commit()
    return token


class Api:
    """A test client that sends the bearer token and JSON, under ``/api/v1``."""

    def __init__(self, client: FlaskClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def _call(
        self, method: str, path: str, body: Any = None, headers: Any = None, **kwargs: Any
    ) -> Any:
        return self.client.open(
            f"/api/v1{path}",
            method=method,
            json=body,
            headers={**self.headers, **(headers or {})},
            **kwargs,
        )

    def get(self, path: str, **kwargs: Any) -> Any:
        return self._call("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self._call("POST", path, body, **kwargs)

    def put(self, path: str, body: Any = None) -> Any:
        return self._call("PUT", path, body)

    def patch(self, path: str, body: Any = None) -> Any:
        return self._call("PATCH", path, body)

    def delete(self, path: str, headers: Any = None) -> Any:
        return self._call("DELETE", path, headers=headers)


@pytest.fixture
def api(client: FlaskClient, admin_token: str) -> Api:
    return Api(client, admin_token)


# --- a real browser and a served app (page and browser tests) ---------------------------

CHROMIUM = os.environ.get("TRELLIS_TEST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A real headless Chromium (Debian's), driven by Playwright."""
    if not os.path.exists(CHROMIUM):
        require_service("Chromium", f"{CHROMIUM} not found (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


# --- servers -----------------------------------------------------------------------------


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app served over real HTTP on a free local port, in a thread."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)

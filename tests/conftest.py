"""Shared fixtures: ``app``, ``client``, ``api`` (an authenticated client), ``db_url``.

Storage, record and API tests run on SQLite and on PostgreSQL: the ``db_url``
fixture is parametrised over both. Each test gets a database of its own — a SQLite
file, or a PostgreSQL database — empty, or (for ``app``) migrated to head with the
administrator: a copy of a template each worker builds once (``db_template``).

PostgreSQL is expected on 127.0.0.1:5432 with trust auth (``TRELLIS_TEST_PG_URL``
overrides). Where it is missing, its tests skip locally and fail under CI.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.pool import NullPool

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
# The suite makes and checks thousands of password hashes: scrypt at n=128 instead of 2¹⁵
# (the same code, half a millisecond instead of a tenth of a second); served apps and
# commands inherit it.
# tests/platform/runtime/test_password_hashing.py checks the default and the setting.
os.environ["TRELLIS_PASSWORD_SCRYPT_N"] = "128"


def require_service(name: str, problem: str) -> None:
    """Skip locally, fail under CI: CI must never pass by skipping what it could not reach."""
    message = f"{name} is not available: {problem}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _admin_engine() -> sa.Engine:
    return sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def _pg_url_of(name: str) -> str:
    return sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def _run_tag() -> str:
    # One set of databases per test run and xdist worker, so concurrent runs never meet.
    return os.environ.get("PYTEST_XDIST_TESTRUNUID", f"{os.getpid():x}")[:8]


def _pg_database_url(worker: str) -> str:
    name = f"trellis_test_{_run_tag()}_{worker}"
    admin = _admin_engine()
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
    return _pg_url_of(name)


@pytest.fixture(scope="session")
def pg_url(worker_id: str) -> Iterator[str]:
    """This worker's own PostgreSQL database, for the tests that manage one themselves."""
    url = _pg_database_url(worker_id)
    yield url
    admin = _admin_engine()
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


# --- database templates -------------------------------------------------------------------
#
# Migrating a database to head takes a second, installing the channel pack with its demo
# data several more; most tests need one or the other before they start. So each worker
# builds every such state once, as a template, and each test gets a copy of it: the
# SQLite file copied, a PostgreSQL database created with ``CREATE DATABASE … TEMPLATE``.
# A copy is the same database the steps would have made (the same rows, sequences and
# schema): only the time they were made differs.


def _channel_demo(app: Flask) -> None:
    from trellis.platform.runtime.packs import install_pack, resolve_pack

    with database_of(app).session() as session:
        registry = app.extensions["trellis.registry"]
        install_pack(
            session, registry, resolve_pack("channel_pack"), author_id=None, with_demo=True
        )
        session.commit()


def _channel(app: Flask) -> None:
    from trellis.platform.runtime.packs import install_pack, resolve_pack

    with database_of(app).session() as session:
        registry = app.extensions["trellis.registry"]
        install_pack(session, registry, resolve_pack("channel_pack"), author_id=None)
        session.commit()


def _known_passwords(app: Flask) -> None:
    from tests.ui.conftest import set_every_password

    set_every_password(app)


def _order_status_plain(app: Flask) -> None:
    from tests.ui.conftest import drop_workflow

    drop_workflow(app, "order_flow")


# name: (the template it starts from, what is done to it). "migrated" is ``migrated_app``.
TEMPLATES: dict[str, tuple[str, Callable[[Flask], None]]] = {
    # the channel pack as `trellis pack install channel_pack` leaves it
    "channel": ("migrated", _channel),
    # … with its demo data, as `trellis pack install --demo channel_pack`
    "channel_demo": ("migrated", _channel_demo),
    # … and every user's password tests.ui.conftest.PASSWORD (pages signed in through forms)
    "channel_demo_signed": ("channel_demo", _known_passwords),
    # … and the order status a plain field: no order workflow (tests of what reads it)
    "channel_demo_signed_plain_status": ("channel_demo_signed", _order_status_plain),
}


def app_on(url: str) -> Flask:
    """The test configuration's app on ``url``."""
    return create_app({"DATABASE_URL": url, "SECRET_KEY": "test-secret", "TESTING": True})


def app_of_copy(url: str) -> Flask:
    """The test configuration's app on ``url``, a template's copy, its registry read from
    it: as an app has it after its first request, or after making what the database holds
    itself (tests read the registry outside requests)."""
    app = app_on(url)
    with database_of(app).session() as session:
        app.extensions["trellis.registry"].ensure_current(session)
    return app


DROPS_AT_ONCE = 6


def _drop_databases(names: list[str]) -> list[str]:
    """Drop ``names`` at once, each on a connection of its own; the errors, as text."""
    errors: list[str] = []

    def drop(name: str) -> None:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except sa.exc.SQLAlchemyError as exc:
            errors.append(f"{name}: {exc}")
        finally:
            admin.dispose()

    with ThreadPoolExecutor(max_workers=DROPS_AT_ONCE) as pool:
        list(pool.map(drop, names))
    return errors


class WorkerDatabases:
    """This worker's templates, built on first use, and each test's copy of one."""

    def __init__(self, folder: Path, worker: str) -> None:
        self.folder = folder
        self.prefix = f"trellis_test_{_run_tag()}_{worker}"
        self.sqlite_made: dict[str, Path] = {}
        self.pg_made: dict[str, str] = {}
        self.pg_used: list[str] = []
        self.count = 0
        self.drops: queue.Queue[str | None] = queue.Queue()
        self.drop_errors: list[str] = []
        self.dropper: threading.Thread | None = None

    # SQLite: files.

    def sqlite_template(self, name: str) -> Path:
        if name not in self.sqlite_made:
            path = self.folder / f"{name}.db"
            if name == "migrated":
                self._build(migrated_app(f"sqlite:///{path}"), None)
            else:
                parent, step = TEMPLATES[name]
                shutil.copyfile(self.sqlite_template(parent), path)
                self._build(app_of_copy(f"sqlite:///{path}"), step)
            # Every connection closed: WAL mode's journal is folded into the file and gone.
            assert not path.with_name(path.name + "-wal").exists()
            self.sqlite_made[name] = path
        return self.sqlite_made[name]

    def sqlite_copy(self, template: str | None, path: Path) -> str:
        if template is not None:
            shutil.copyfile(self.sqlite_template(template), path)
        return f"sqlite:///{path}"

    # PostgreSQL: databases, copied by the server.

    def _create(self, name: str, template: str) -> None:
        admin = _admin_engine()
        try:
            with admin.connect() as connection:
                connection.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        except sa.exc.OperationalError as exc:
            require_service("PostgreSQL", str(exc.orig).strip().splitlines()[0])
        finally:
            admin.dispose()

    def pg_template(self, name: str) -> str:
        if name not in self.pg_made:
            database = f"{self.prefix}_tpl_{name}"
            self.pg_used.append(database)
            if name == "migrated":
                self._create(database, "template0")
                self._build(migrated_app(_pg_url_of(database)), None)
            else:
                parent, step = TEMPLATES[name]
                self._create(database, self.pg_template(parent))
                self._build(app_of_copy(_pg_url_of(database)), step)
            self.pg_made[name] = database
        return self.pg_made[name]

    def pg_copy(self, template: str | None) -> str:
        """A new database for one test: empty, or a copy of ``template``."""
        source = "template0" if template is None else self.pg_template(template)
        self.count += 1
        name = f"{self.prefix}_{self.count}"
        self._create(name, source)
        return _pg_url_of(name)

    def drop_later(self, url: str) -> None:
        """Drop a test's database in the background, while the next tests run."""
        if self.dropper is None:
            self.dropper = threading.Thread(target=self._drop_each, daemon=True)
            self.dropper.start()
        self.drops.put(sa.make_url(url).database)

    def _drop_each(self) -> None:
        # DROP DATABASE waits for a checkpoint; those asked for together share one, so
        # whatever has queued up meanwhile is dropped at once, each on its own connection.
        stopping = False
        while not stopping:
            names = [self.drops.get()]
            while len(names) < DROPS_AT_ONCE:
                try:
                    names.append(self.drops.get_nowait())
                except queue.Empty:
                    break
            stopping = None in names
            self.drop_errors += _drop_databases([n for n in names if n is not None])

    def close(self) -> None:
        if self.dropper is not None:
            self.drops.put(None)
            self.dropper.join(timeout=300)
        self.drop_errors += _drop_databases(self.pg_used)
        assert not self.drop_errors, self.drop_errors

    @staticmethod
    def _build(app: Flask, step: Callable[[Flask], None] | None) -> None:
        try:
            if step is not None:
                step(app)
        finally:
            database_of(app).engine.dispose()


@pytest.fixture(scope="session")
def test_databases(
    tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> Iterator[WorkerDatabases]:
    databases = WorkerDatabases(tmp_path_factory.mktemp("templates"), worker_id)
    yield databases
    databases.close()


def template_for(request: pytest.FixtureRequest, **by_fixture: str) -> str | None:
    """The template of the first of ``by_fixture`` (fixture name: template) the test uses;
    else ``migrated`` (migrated to head, with the administrator) when it uses ``app``, else
    None: an empty database."""
    for fixture, template in by_fixture.items():
        if fixture in request.fixturenames:
            return template
    return "migrated" if "app" in request.fixturenames else None


@pytest.fixture
def db_template(request: pytest.FixtureRequest) -> str | None:
    """What the test's database starts as: a copy of the template so named, or empty (None).

    ``channel_demo_signed`` when the test uses ``pack_app``, else ``template_for``'s. A
    module whose fixtures would build on the app overrides this with the template that
    holds what they would make (``TEMPLATES``), and those fixtures make nothing.
    """
    return template_for(request, pack_app="channel_demo_signed")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    db_template: str | None,
    test_databases: WorkerDatabases,
) -> Iterator[str]:
    """The test's own database of each kind: empty, or as ``db_template`` says."""
    if request.param == "sqlite":
        yield test_databases.sqlite_copy(db_template, tmp_path / "trellis.db")
        return
    url = test_databases.pg_copy(db_template)
    yield url
    test_databases.drop_later(url)


def migrated_app(url: str, admin_email: str = ADMIN_EMAIL) -> Flask:
    """An app on ``url``, migrated to head, with the administrator ``admin_email``."""
    app = app_on(url)
    database = database_of(app)
    with database.session() as session:
        init_database(database.engine, session, admin_email, ADMIN_PASSWORD)
    return app


@pytest.fixture
def app(db_url: str, db_template: str | None) -> Iterator[Flask]:
    # The database is a template's copy; migrated here only when it was asked for empty.
    app = migrated_app(db_url) if db_template is None else app_of_copy(db_url)
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

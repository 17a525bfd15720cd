"""Sign-in throttling under real concurrency, and the per-address limit on sign-in POSTs.

The account lock is tested against `trellis serve` (gunicorn: two workers, eight threads
each) on SQLite and PostgreSQL, with 40 wrong passwords released at once. The address
limit runs on the test client, with Flask-Limiter's memory storage and with the real
Redis (its own key prefix, removed afterwards).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, require_service
from tests.test_served_scenario import _free_port
from trellis import create_app
from trellis.extensions import Database, database_of
from trellis.platform.runtime.bootstrap import init_database
from trellis.platform.runtime.identity import LOCK_AFTER
from trellis.platform.runtime.identity.tokens import issue_token
from trellis.platform.runtime.models import AuditEvent, User

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PARALLEL = 40
REDIS_URL = os.environ.get("TRELLIS_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(moment: dt.datetime | None) -> dt.datetime | None:
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def stored(engine: sa.Engine, email: str) -> Any:
    with engine.connect() as connection:
        return connection.execute(
            sa.select(User.failed_logins, User.last_failed_at, User.locked_until).where(
                User.email == email
            )
        ).one()


def audit_count(engine: sa.Engine, action: str) -> int:
    with engine.connect() as connection:
        query = sa.select(sa.func.count()).where(AuditEvent.action == action)
        return int(connection.execute(query).scalar_one())


# --- the account lock under parallel guesses, over HTTP ------------------------------------------


@pytest.fixture
def served_pages(app: Flask, db_url: str, tmp_path: Any) -> Iterator[str]:
    """`trellis serve` on the test database; yields its base URL."""
    port = _free_port()
    env = {**os.environ, "TRELLIS_DATABASE_URL": db_url, "TRELLIS_INSTANCE_PATH": str(tmp_path)}
    command = ["serve", "--port", str(port), "--workers", "2", "--threads", "8"]
    process = subprocess.Popen(
        [sys.executable, "-m", "trellis", *command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(base + "/login", timeout=2).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # not up, or a slow first answer
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {process.stderr.read()!r}")  # type: ignore[union-attr]
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)


def form_token(http: requests.Session, url: str) -> str:
    page = http.get(url, timeout=30)
    assert page.status_code == 200, page.status_code
    found = CSRF.search(page.text)
    assert found
    return found.group(1)


def post_form(base: str, email: str, password: str) -> int:
    http = requests.Session()
    token = form_token(http, base + "/login")
    form = {"csrf_token": token, "email": email, "password": password}
    return http.post(base + "/login", data=form, allow_redirects=False, timeout=60).status_code


def at_once(count: int, attempt: Callable[[int], int]) -> Counter[int]:
    """Run ``attempt`` in ``count`` threads released together; the statuses they got."""
    gate = threading.Barrier(count)

    def run(index: int) -> int:
        gate.wait(timeout=60)
        return attempt(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return Counter(pool.map(run, range(count)))


def test_parallel_wrong_passwords_lock_the_account(served_pages: str, database: Database) -> None:
    base = served_pages
    # Each thread has its form (session cookie and CSRF token) ready before the gate opens.
    ready: list[tuple[requests.Session, str]] = []
    for _ in range(PARALLEL):
        http = requests.Session()
        ready.append((http, form_token(http, base + "/login")))

    def guess(index: int) -> int:
        http, token = ready[index]
        form = {"csrf_token": token, "email": ADMIN_EMAIL, "password": f"guess {index}"}
        return http.post(base + "/login", data=form, allow_redirects=False, timeout=60).status_code

    statuses = at_once(PARALLEL, guess)
    checked = statuses[401]  # each 401 is one password really checked, and failed
    print(f"\n{PARALLEL} parallel wrong passwords: {dict(statuses)}")
    assert set(statuses) <= {401, 429}, statuses
    assert 1 <= checked <= LOCK_AFTER, statuses
    assert audit_count(database.engine, "auth.login.failure") == checked
    assert audit_count(database.engine, "auth.login.throttled") == statuses[429]
    row = stored(database.engine, ADMIN_EMAIL)
    locked_until = aware(row.locked_until)
    assert locked_until is not None and locked_until > now() + dt.timedelta(minutes=10), row

    # The right password is turned away until the lock ends…
    http = requests.Session()
    form = {"csrf_token": form_token(http, base + "/login"), "email": ADMIN_EMAIL}
    refused = http.post(base + "/login", data={**form, "password": ADMIN_PASSWORD}, timeout=30)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 60
    assert "locked" in refused.text
    # …and works once it has.
    with database.engine.begin() as connection:
        connection.execute(
            sa.update(User)
            .where(User.email == ADMIN_EMAIL)
            .values(locked_until=now() - dt.timedelta(seconds=1))
        )
    assert post_form(base, ADMIN_EMAIL, ADMIN_PASSWORD) == 302
    assert stored(database.engine, ADMIN_EMAIL).failed_logins == 0


def test_parallel_wrong_current_passwords_lock_the_account(
    served_pages: str, database: Database
) -> None:
    base = served_pages
    signed_in = requests.Session()
    token = form_token(signed_in, base + "/login")
    form = {"csrf_token": token, "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    assert signed_in.post(base + "/login", data=form, allow_redirects=False).status_code == 302
    token = form_token(signed_in, base + "/password")
    cookies = signed_in.cookies.get_dict()

    def change(index: int, current: str) -> requests.Response:
        http = requests.Session()  # one per thread: a Session is not thread-safe
        http.cookies.update(cookies)
        form = {
            "csrf_token": token,
            "current_password": current,
            "new_password": f"new password {index}",
            "confirm_password": f"new password {index}",
        }
        return http.post(base + "/password", data=form, allow_redirects=False, timeout=60)

    statuses = at_once(PARALLEL, lambda index: change(index, f"guess {index}").status_code)
    print(f"\n{PARALLEL} parallel wrong current passwords: {dict(statuses)}")
    assert set(statuses) <= {400, 429} and 1 <= statuses[400] <= LOCK_AFTER, statuses
    assert audit_count(database.engine, "auth.password.failure") == statuses[400]
    assert audit_count(database.engine, "auth.password.throttled") == statuses[429]
    locked_until = aware(stored(database.engine, ADMIN_EMAIL).locked_until)
    assert locked_until is not None and locked_until > now() + dt.timedelta(minutes=10)
    # Locked: even the right current password changes nothing.
    refused = change(0, ADMIN_PASSWORD)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 60
    assert post_form(base, ADMIN_EMAIL, ADMIN_PASSWORD) == 429


# --- the change-password form counts failures like the sign-in form ------------------------------


def sign_in(client: FlaskClient, email: str, password: str, **kwargs: Any) -> int:
    found = CSRF.search(client.get("/login").get_data(as_text=True))
    assert found
    form = {"csrf_token": found.group(1), "email": email, "password": password}
    return client.post("/login", data=form, **kwargs).status_code


def test_wrong_current_passwords_are_counted_and_lock(app: Flask, database: Database) -> None:
    client = app.test_client()
    assert sign_in(client, ADMIN_EMAIL, ADMIN_PASSWORD) == 302
    found = CSRF.search(client.get("/password").get_data(as_text=True))
    assert found
    form = {"csrf_token": found.group(1), "new_password": "x" * 12, "confirm_password": "x" * 12}
    for attempt in range(LOCK_AFTER):
        response = client.post("/password", data={**form, "current_password": f"no {attempt}"})
        assert response.status_code == 400, (attempt, response.status_code)
        assert "The current password is wrong" in response.get_data(as_text=True)
        with database.engine.begin() as connection:  # wait out the back-off without sleeping
            connection.execute(
                sa.update(User)
                .where(User.email == ADMIN_EMAIL)
                .values(last_failed_at=now() - dt.timedelta(hours=1))
            )
    assert aware(stored(database.engine, ADMIN_EMAIL).locked_until) is not None
    response = client.post("/password", data={**form, "current_password": ADMIN_PASSWORD})
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 60
    # The password did not change: the old one is the one refused by the lock, not a new one.
    assert sign_in(app.test_client(), ADMIN_EMAIL, "x" * 12) == 429
    with database.engine.begin() as connection:
        connection.execute(
            sa.update(User)
            .where(User.email == ADMIN_EMAIL)
            .values(locked_until=now() - dt.timedelta(seconds=1))
        )
    assert sign_in(app.test_client(), ADMIN_EMAIL, "x" * 12) == 401
    assert sign_in(app.test_client(), ADMIN_EMAIL, ADMIN_PASSWORD) == 302


# --- the per-address limit (password spraying) ----------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def limit_storage(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Config for the limit's storage: memory, or the real Redis under a key prefix of its own."""
    prefix = f"trellis-test-{uuid.uuid4().hex[:12]}"
    if request.param == "memory":
        yield {"RATE_LIMIT_STORAGE_URL": "memory://", "RATE_LIMIT_KEY_PREFIX": prefix}
        return
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisDown

    redis = Redis.from_url(REDIS_URL)
    try:
        redis.ping()
    except RedisDown as exc:
        require_service("Redis", str(exc))
    try:
        # As in production: TRELLIS_REDIS_URL alone puts the counts in Redis.
        yield {"REDIS_URL": REDIS_URL, "RATE_LIMIT_KEY_PREFIX": prefix}
        assert list(redis.scan_iter(f"*{prefix}*")), "the counts were not kept in Redis"
    finally:
        for key in redis.scan_iter(f"*{prefix}*"):
            redis.delete(key)
        redis.close()


def limited_app(tmp_path: Any, storage: dict[str, str], limit: str = "5 per minute") -> Flask:
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'trellis.db'}",
            "SECRET_KEY": "test-secret",
            "TESTING": True,
            "LOGIN_RATE_LIMIT": limit,
            **storage,
        }
    )
    database = database_of(app)
    with database.session() as session:
        init_database(database.engine, session, ADMIN_EMAIL, ADMIN_PASSWORD)
    return app


SPRAYER = {"REMOTE_ADDR": "198.51.100.9"}
OTHER = {"REMOTE_ADDR": "198.51.100.10"}


def test_one_address_cannot_spray_passwords_across_accounts(
    tmp_path: Any, limit_storage: dict[str, str]
) -> None:
    app = limited_app(tmp_path, limit_storage)
    database = database_of(app)
    with database.session() as session:
        token = issue_token(session, ADMIN_EMAIL, name="tests")
        session.commit()
    bearer = {"Authorization": f"Bearer {token}"}
    client = app.test_client()
    emails = [f"person{n}@example.com" for n in range(8)]
    for email in emails:
        body = {"email": email, "password": "a fine password"}
        assert client.post("/api/v1/users", json=body, headers=bearer).status_code == 201

    # One guess per account: no account's own counter comes near its back-off.
    sprayer = app.test_client()
    statuses = [sign_in(sprayer, email, "Summer2024!", environ_base=SPRAYER) for email in emails]
    assert statuses == [401] * 5 + [429] * 3, statuses
    assert [stored(database.engine, e).failed_logins for e in emails] == [1] * 5 + [0] * 3

    found = CSRF.search(sprayer.get("/login").get_data(as_text=True))
    assert found
    form = {"csrf_token": found.group(1), "email": emails[0], "password": "x"}
    page = sprayer.post("/login", data=form, environ_base=SPRAYER)
    assert (
        page.status_code == 429 and 1 <= int(page.headers["Retry-After"]) <= 61
    )  # the window, rounded up to a whole second
    assert "too many sign-in attempts from this address" in page.get_data(as_text=True)
    as_json = sprayer.post(
        "/login",
        data=form,
        headers={"Accept": "application/json"},
        environ_base=SPRAYER,
    )
    error = as_json.get_json()["error"]
    assert as_json.status_code == 429 and as_json.headers["Retry-After"]
    assert error["code"] == "too_many_attempts" and error["details"][0]["field"] == "retry_after"
    # Even the right password waits; the form itself still loads.
    assert sign_in(sprayer, ADMIN_EMAIL, ADMIN_PASSWORD, environ_base=SPRAYER) == 429
    assert sprayer.get("/login", environ_base=SPRAYER).status_code == 200
    assert audit_count(database.engine, "auth.login.rate_limited") == 6

    # Another address is not held back, nor is the API from the limited one.
    assert sign_in(app.test_client(), ADMIN_EMAIL, ADMIN_PASSWORD, environ_base=OTHER) == 302
    for _ in range(10):
        response = client.get("/api/v1/me", headers=bearer, environ_base=SPRAYER)
        assert response.status_code == 200


def test_workers_share_the_count_through_redis(tmp_path: Any) -> None:
    """Two apps (as two gunicorn workers) on one Redis count one address together."""
    from redis import Redis

    redis = Redis.from_url(REDIS_URL)
    try:
        redis.ping()
    except Exception as exc:
        require_service("Redis", str(exc))
    prefix = f"trellis-test-{uuid.uuid4().hex[:12]}"
    storage = {"REDIS_URL": REDIS_URL, "RATE_LIMIT_KEY_PREFIX": prefix}
    try:
        first = limited_app(tmp_path, storage, "4 per minute").test_client()
        second = limited_app(tmp_path, storage, "4 per minute").test_client()
        # Unknown addresses: no account counter can be what refuses them.
        guesses = [f"nobody{n}@example.com" for n in range(5)]
        assert [sign_in(first, e, "guess", environ_base=SPRAYER) for e in guesses[:2]] == [401] * 2
        statuses = [sign_in(second, e, "guess", environ_base=SPRAYER) for e in guesses[2:]]
        assert statuses == [401, 401, 429]
    finally:
        for key in redis.scan_iter(f"*{prefix}*"):
            redis.delete(key)
        redis.close()


def test_a_limit_that_is_not_one_is_refused_at_start(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="TRELLIS_LOGIN_RATE_LIMIT 'lots' is not a rate limit"):
        create_app(
            {
                "DATABASE_URL": f"sqlite:///{tmp_path / 'trellis.db'}",
                "SECRET_KEY": "test-secret",
                "LOGIN_RATE_LIMIT": "lots",
            }
        )

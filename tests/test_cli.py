"""The ``trellis`` command: init, token create, pack install — and serve / demo for real."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import _reset_pg
from trellis import create_app
from trellis.cli import main
from trellis.extensions import database_of
from trellis.platform.runtime.models import InstalledPack, MetaObjectVersion, User
from trellis.platform.runtime.packs import BUILTIN_PACKS, demo_user_entries

EMAIL = "owner@example.com"
PASSWORD = "a long enough password"
# Settings the developer's shell may carry that would change what the commands do.
CLEARED = (
    "TRELLIS_ADMIN_EMAIL",
    "TRELLIS_ADMIN_PASSWORD",
    "TRELLIS_SECRET_KEY",
    "TRELLIS_REDIS_URL",
)
SERVER_START_TIMEOUT = 60.0
TOKEN_RE = re.compile(r"trl_[A-Za-z0-9_-]{20,}")


# --- helpers ---------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def environment(tmp_path: Path, sqlite_url: str) -> dict[str, str | None]:
    env: dict[str, str | None] = dict.fromkeys(CLEARED)
    env["TRELLIS_DATABASE_URL"] = sqlite_url
    env["TRELLIS_INSTANCE_PATH"] = str(tmp_path / "instance")
    return env


Run = Callable[..., Result]


@pytest.fixture
def trellis(environment: dict[str, str | None]) -> Iterator[Run]:
    """Run ``trellis <args>`` in-process; ``env`` adds to the test's environment."""

    def run(*args: str, env: dict[str, str | None] | None = None, ok: bool = True) -> Result:
        result = CliRunner().invoke(main, list(args), env={**environment, **(env or {})})
        if ok:
            assert result.exit_code == 0, (result.output, result.exception)
        return result

    yield run


def engine_for(url: str) -> sa.Engine:
    return sa.create_engine(url)


def users(url: str) -> list[tuple[str, bool]]:
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.select(User.email, User.is_admin).order_by(User.id))
            return [(email, bool(admin)) for email, admin in rows]
    finally:
        engine.dispose()


def count(url: str, table: str) -> int:
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            return int(connection.scalar(sa.text(f"SELECT count(*) FROM {table}")) or 0)  # noqa: S608
    finally:
        engine.dispose()


def last_line(result: Result) -> str:
    return result.stdout.strip().splitlines()[-1]


AppOn = Callable[[str], Flask]


@pytest.fixture
def api_app() -> Iterator[AppOn]:
    """Build apps on the database the commands set up; their engines close after the test."""
    made: list[Flask] = []

    def build(url: str) -> Flask:
        made.append(create_app({"DATABASE_URL": url, "SECRET_KEY": "test", "TESTING": True}))
        return made[-1]

    yield build
    for app in made:
        database_of(app).engine.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- init ------------------------------------------------------------------------------


def test_init_creates_the_database_and_the_admin(trellis: Run, sqlite_url: str) -> None:
    result = trellis("init", "--admin-email", EMAIL, "--admin-password", PASSWORD)
    assert "database ready" in result.stdout
    assert f"admin {EMAIL} created" in result.stdout
    assert users(sqlite_url) == [(EMAIL, True)]
    assert count(sqlite_url, "meta_revision") == 1


def test_init_is_idempotent(trellis: Run, sqlite_url: str) -> None:
    trellis("init", "--admin-email", EMAIL, "--admin-password", PASSWORD)
    again = trellis("init", "--admin-email", EMAIL, "--admin-password", "another password")
    assert f"admin {EMAIL} updated" in again.stdout
    trellis("init")  # no admin: only the database
    assert users(sqlite_url) == [(EMAIL, True)]
    assert count(sqlite_url, "meta_revision") == 1
    # The new password is the one that counts.
    from werkzeug.security import check_password_hash

    engine = engine_for(sqlite_url)
    with engine.connect() as connection:
        stored = connection.scalar(sa.select(User.password_hash))
    engine.dispose()
    assert check_password_hash(str(stored), "another password")


def test_init_reads_the_admin_from_the_environment(trellis: Run, sqlite_url: str) -> None:
    result = trellis("init", env={"TRELLIS_ADMIN_EMAIL": EMAIL, "TRELLIS_ADMIN_PASSWORD": PASSWORD})
    assert f"admin {EMAIL} created" in result.stdout
    assert users(sqlite_url) == [(EMAIL, True)]


def test_init_refuses_a_short_password(trellis: Run, sqlite_url: str) -> None:
    result = trellis("init", "--admin-email", EMAIL, "--admin-password", "short", ok=False)
    assert result.exit_code != 0
    assert "password too short" in result.stderr
    assert "at least 8 characters" in result.stderr
    assert "Traceback" not in result.output
    assert count(sqlite_url, "sqlite_master") == 0  # refused before the database is touched
    # The same from the environment.
    env = {"TRELLIS_ADMIN_EMAIL": EMAIL, "TRELLIS_ADMIN_PASSWORD": "1234567"}
    from_env = trellis("init", env=env, ok=False)
    assert from_env.exit_code != 0 and "password too short" in from_env.stderr


def test_init_needs_both_email_and_password(trellis: Run) -> None:
    result = trellis("init", "--admin-email", EMAIL, ok=False)
    assert result.exit_code == 2
    assert "--admin-password" in result.output


def test_init_refuses_an_invalid_email(trellis: Run) -> None:
    result = trellis("init", "--admin-email", "nobody", "--admin-password", PASSWORD, ok=False)
    assert result.exit_code != 0 and "invalid e-mail" in result.stderr


# --- token create ----------------------------------------------------------------------


def test_token_create_prints_a_working_token(
    trellis: Run, sqlite_url: str, tmp_path: Path, api_app: AppOn
) -> None:
    trellis("init", "--admin-email", EMAIL, "--admin-password", PASSWORD)
    result = trellis("token", "create", "--user", EMAIL)
    token = last_line(result)
    assert TOKEN_RE.fullmatch(token), result.stdout
    second = last_line(trellis("token", "create", "--user", EMAIL.upper(), "--name", "ci"))
    assert second != token

    client = api_app(sqlite_url).test_client()
    for good in (token, second):
        response = client.get("/api/v1/objects", headers=bearer(good))
        assert response.status_code == 200, response.get_json()
        assert response.get_json() == {"items": []}
    made_up = "trl_" + "x" * 43
    assert client.get("/api/v1/objects", headers=bearer(made_up)).status_code == 401
    assert client.get("/api/v1/objects").status_code == 401


def test_token_create_for_an_unknown_user_fails(trellis: Run, sqlite_url: str) -> None:
    trellis("init", "--admin-email", EMAIL, "--admin-password", PASSWORD)
    result = trellis("token", "create", "--user", "ghost@example.com", ok=False)
    assert result.exit_code != 0
    assert "no active user 'ghost@example.com'" in result.stderr
    assert not TOKEN_RE.search(result.output)
    assert count(sqlite_url, "api_tokens") == 0


def test_token_create_needs_a_user(trellis: Run) -> None:
    result = trellis("token", "create", ok=False)
    assert result.exit_code == 2 and "--user" in result.output


def test_commands_before_init_fail_clearly(trellis: Run) -> None:
    for args in (["token", "create", "--user", EMAIL], ["pack", "install", "channel_pack"]):
        result = trellis(*args, ok=False)
        assert result.exit_code != 0, args
        assert "trellis init" in result.stderr, args
        assert result.exception is None or isinstance(result.exception, SystemExit)


# --- pack install ----------------------------------------------------------------------


def test_pack_install_by_name_is_idempotent(trellis: Run, sqlite_url: str) -> None:
    trellis("init")
    first = trellis("pack", "install", "channel_pack")
    assert "pack channel_pack" in first.stdout
    assert "created 4, updated 0, unchanged 0 object(s)" in first.stdout
    assert "created 5, updated 0, unchanged 0 role(s)" in first.stdout
    assert "created 5, updated 0, unchanged 0 automation(s)" in first.stdout
    assert "demo record" not in first.stdout and "demo user" not in first.stdout
    assert count(sqlite_url, "obj_dealer") == 0
    versions = count(sqlite_url, "meta_object_versions")
    assert versions == 7  # dealer in 2 versions, sales_order in 3 (staged), the others in 1
    second = trellis("pack", "install", "channel_pack")
    assert "created 0, updated 0, unchanged 4 object(s)" in second.stdout
    assert "created 0, updated 0, unchanged 5 role(s)" in second.stdout
    assert count(sqlite_url, "meta_object_versions") == versions
    assert count(sqlite_url, "installed_packs") == 1


def test_pack_install_demo_loads_once(trellis: Run, sqlite_url: str) -> None:
    trellis("init")
    first = trellis("pack", "install", "channel_pack", "--demo")
    assert re.search(r"\b\d+ demo record\(s\), 7 demo user\(s\)", first.stdout), first.stdout
    assert "trellis user set-password" in first.stdout
    dealers, products = count(sqlite_url, "obj_dealer"), count(sqlite_url, "obj_product")
    assert dealers > 0 and products >= 12
    again = trellis("pack", "install", "channel_pack", "--demo")
    assert "demo record" not in again.stdout
    assert (count(sqlite_url, "obj_dealer"), count(sqlite_url, "obj_product")) == (
        dealers,
        products,
    )


def test_pack_install_from_a_folder(
    trellis: Run, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trellis("init")
    folder = tmp_path / "my pack"
    shutil.copytree(BUILTIN_PACKS / "channel_pack", folder)
    result = trellis("pack", "install", str(folder), "--demo")
    assert "created 4" in result.stdout and "demo record" in result.stdout
    assert "unchanged 4" in trellis("pack", "install", str(folder), "--demo").stdout
    monkeypatch.chdir(tmp_path)  # a relative path works too
    assert "unchanged 4" in trellis("pack", "install", "my pack", "--demo").stdout
    assert count(sqlite_url, "installed_packs") == 1
    assert count(sqlite_url, "obj_product") == 12


def test_pack_install_of_nothing_fails_clearly(trellis: Run, sqlite_url: str) -> None:
    trellis("init")
    result = trellis("pack", "install", "nowhere", ok=False)
    assert result.exit_code != 0
    assert "no pack at 'nowhere'" in result.stderr
    assert count(sqlite_url, "installed_packs") == 0


def test_pack_install_of_an_invalid_pack_changes_nothing(
    trellis: Run, sqlite_url: str, tmp_path: Path
) -> None:
    trellis("init")
    folder = tmp_path / "bad"
    shutil.copytree(BUILTIN_PACKS / "channel_pack", folder)
    order = folder / "objects" / "order.json"
    order.write_text(
        order.read_text(encoding="utf-8").replace('"x-target": "dealer"', '"x-target": "ghost"')
    )
    result = trellis("pack", "install", str(folder), "--demo", ok=False)
    assert result.exit_code != 0
    assert "objects/order.json" in result.stderr and "unknown object 'ghost'" in result.stderr
    assert count(sqlite_url, "meta_objects") == 0
    assert count(sqlite_url, "installed_packs") == 0


# --- user create / set-password / deactivate ---------------------------------------------

EAST_HIERARCHY = {
    "D-0101",
    "D-1011",
    "D-1012",
    "D-1013",
    "APP-HZ-01",
}  # reg-east, its sub-dealers, an applicant
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(page: str) -> str:
    match = CSRF_RE.search(page)
    assert match, page
    return match.group(1)


def form_sign_in(client: FlaskClient, email: str, password: str) -> TestResponse:
    """Sign in through the /login form, CSRF token and all, as a browser would."""
    token = csrf_token(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"csrf_token": token, "email": email, "password": password})


def dealer_ids(client: FlaskClient, token: str) -> dict[str, int]:
    """Code → id of every dealer the token's user may read."""
    response = client.get("/api/v1/records/dealer?limit=500", headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    return {item["code"]: item["id"] for item in response.get_json()["items"]}


def audit_events(client: FlaskClient, admin_token: str, action: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/audit?action={action}&limit=500", headers=bearer(admin_token))
    assert response.status_code == 200, response.get_json()
    items: list[dict[str, Any]] = response.get_json()["items"]
    return items


@pytest.fixture
def any_db(db_url: str, tmp_path: Path) -> Iterator[tuple[str, Run]]:
    """``trellis`` on an empty database of each kind (SQLite, PostgreSQL)."""
    env: dict[str, str | None] = dict.fromkeys(CLEARED)
    env.update(TRELLIS_DATABASE_URL=db_url, TRELLIS_INSTANCE_PATH=str(tmp_path / "instance"))

    def run(*args: str, ok: bool = True) -> Result:
        result = CliRunner().invoke(main, list(args), env=env)
        if ok:
            assert result.exit_code == 0, (result.output, result.exception)
        return result

    yield db_url, run


def test_user_create_with_roles_and_a_partner(any_db: tuple[str, Run], api_app: AppOn) -> None:
    url, trellis = any_db
    trellis("init", "--admin-email", EMAIL, "--admin-password", PASSWORD)
    trellis("pack", "install", "channel_pack", "--demo")
    admin_token = last_line(trellis("token", "create", "--user", EMAIL))
    client = api_app(url).test_client()
    every_dealer = dealer_ids(client, admin_token)
    assert len(every_dealer) == 16 and set(every_dealer) > EAST_HIERARCHY
    east = every_dealer["D-0101"]

    created = trellis(
        "user", "create", "--email", "Li.Wei@Example.com", "--password", "li wei's password",
        "--name", "李伟 Li Wei", "--role", "dealer_admin", "--role", "dealer_sales",
        "--partner", str(east),
    )  # fmt: skip
    match = re.fullmatch(r"user li\.wei@example\.com created \(id (\d+)\)", created.stdout.strip())
    assert match, created.stdout
    user_id = int(match.group(1))
    shown = client.get(f"/api/v1/users/{user_id}", headers=bearer(admin_token)).get_json()
    assert shown["email"] == "li.wei@example.com" and shown["name"] == "李伟 Li Wei"
    assert shown["roles"] == ["dealer_admin", "dealer_sales"]
    assert shown["partner"] == east
    assert shown["is_admin"] is False and shown["is_active"] is True

    # Their token sees their dealer and the ones below it, nothing else.
    token = last_line(trellis("token", "create", "--user", "li.wei@example.com"))
    assert set(dealer_ids(client, token)) == EAST_HIERARCHY
    me = client.get("/api/v1/me", headers=bearer(token)).get_json()
    assert me["roles"] == ["dealer_admin", "dealer_sales"] and me["partner"] == east
    assert client.get("/api/v1/users", headers=bearer(token)).status_code == 403
    outside = every_dealer["D-0102"]  # the north region
    assert client.get(f"/api/v1/records/dealer/{outside}", headers=bearer(token)).status_code == 404

    # --admin makes a platform administrator: every dealer, and the admin APIs.
    trellis("user", "create", "--email", "ops@example.com", "--password", PASSWORD, "--admin")
    ops = last_line(trellis("token", "create", "--user", "ops@example.com"))
    assert set(dealer_ids(client, ops)) == set(every_dealer)
    assert client.get("/api/v1/users", headers=bearer(ops)).status_code == 200

    events = audit_events(client, admin_token, "user.created")
    assert {e["detail"]["email"] for e in events if e["detail"].get("via") == "cli"} == {
        EMAIL,  # by `trellis init`
        "li.wei@example.com",
        "ops@example.com",
    }


def test_user_create_refuses_bad_input_and_creates_nothing(trellis: Run, sqlite_url: str) -> None:
    trellis("init", "--admin-email", EMAIL, "--admin-password", PASSWORD)
    user = ("user", "create", "--email", "new@example.com")
    before_install = trellis(*user, "--password", PASSWORD, "--partner", "1", ok=False)
    assert before_install.exit_code != 0
    assert "no hierarchy object is defined" in before_install.stderr
    trellis("pack", "install", "channel_pack", "--demo")
    users_before = users(sqlite_url)
    events_before = count(sqlite_url, "audit_events")

    cases = [
        (["--password", PASSWORD, "--role", "dealer_admin", "--role", "ghost"], "no role 'ghost'"),
        (["--password", "short"], "password too short"),
        (["--password", PASSWORD, "--partner", "999999"], "no dealer with id 999999"),
        (["--password", PASSWORD, "--partner", "east"], "'east' is not a valid integer"),
    ]
    for extra, message in cases:
        result = trellis(*user, *extra, ok=False)
        assert result.exit_code != 0, extra
        assert message in result.output, (extra, result.output)
        assert "Traceback" not in result.output and "created" not in result.stdout, extra
    duplicate = trellis(
        "user", "create", "--email", " East.Admin@example.com ", "--password", PASSWORD,
        ok=False,
    )  # fmt: skip
    assert duplicate.exit_code != 0
    assert "a user with e-mail east.admin@example.com exists" in duplicate.stderr
    bad_email = trellis("user", "create", "--email", "nobody", "--password", PASSWORD, ok=False)
    assert bad_email.exit_code != 0 and "invalid e-mail address" in bad_email.stderr
    missing = trellis("user", "create", "--email", "new@example.com", ok=False)
    assert missing.exit_code == 2 and "--password" in missing.output

    assert users(sqlite_url) == users_before
    assert count(sqlite_url, "user_roles") == 7  # the demo users' only
    assert count(sqlite_url, "audit_events") == events_before


def test_user_set_password_then_sign_in_through_the_form(
    trellis: Run, sqlite_url: str, api_app: AppOn
) -> None:
    trellis("init", "--admin-email", EMAIL, "--admin-password", PASSWORD)
    trellis("user", "create", "--email", "pat@example.com", "--password", "first password")
    client = api_app(sqlite_url).test_client()
    assert form_sign_in(client, "pat@example.com", "first password").status_code == 302

    # Locked out by failed sign-ins; setting a password lets them in again.
    engine = engine_for(sqlite_url)
    with engine.begin() as connection:
        connection.execute(
            sa.update(User)
            .where(User.email == "pat@example.com")
            .values(locked_until=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10))
        )
    engine.dispose()
    fresh = api_app(sqlite_url).test_client()
    assert form_sign_in(fresh, "pat@example.com", "first password").status_code == 429

    result = trellis(
        "user", "set-password", "--email", "PAT@example.com", "--password", "second one"
    )
    assert result.stdout.strip() == "password of PAT@example.com set"
    fresh = api_app(sqlite_url).test_client()
    assert form_sign_in(fresh, "pat@example.com", "first password").status_code == 401
    signed_in = form_sign_in(fresh, "pat@example.com", "second one")
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/"
    home = fresh.get("/")
    assert home.status_code == 200 and "Welcome, pat" in home.get_data(as_text=True)
    # The session from before the change has ended.
    assert client.get("/").status_code == 302
    # The form is refused without its CSRF token, even with the right password.
    bare = api_app(sqlite_url).test_client()
    refused = bare.post("/login", data={"email": "pat@example.com", "password": "second one"})
    assert refused.status_code == 400 and bare.get("/").status_code == 302

    for args, message in (
        (["--email", "ghost@example.com", "--password", PASSWORD], "no user 'ghost@example.com'"),
        (["--email", "pat@example.com", "--password", "short"], "password too short"),
    ):
        failed = trellis("user", "set-password", *args, ok=False)
        assert failed.exit_code != 0 and message in failed.stderr, failed.output
    assert (
        form_sign_in(api_app(sqlite_url).test_client(), "pat@example.com", "second one").status_code
        == 302
    )


def test_user_deactivate_stops_tokens_and_sign_in(any_db: tuple[str, Run], api_app: AppOn) -> None:
    url, trellis = any_db
    trellis("init", "--admin-email", EMAIL, "--admin-password", PASSWORD)
    admin_token = last_line(trellis("token", "create", "--user", EMAIL))
    trellis("user", "create", "--email", "leaver@example.com", "--password", PASSWORD)
    token = last_line(trellis("token", "create", "--user", "leaver@example.com"))
    client = api_app(url).test_client()
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    assert form_sign_in(client, "leaver@example.com", PASSWORD).status_code == 302
    assert client.get("/").status_code == 200

    result = trellis("user", "deactivate", "--email", "leaver@example.com")
    assert result.stdout.strip() == "user leaver@example.com deactivated"
    refused = client.get("/api/v1/me", headers=bearer(token))
    assert refused.status_code == 401, refused.get_json()
    assert client.get("/").status_code == 302  # the page session has ended too
    assert form_sign_in(client, "leaver@example.com", PASSWORD).status_code == 401
    no_token = trellis("token", "create", "--user", "leaver@example.com", ok=False)
    assert no_token.exit_code != 0 and "no active user" in no_token.stderr
    assert not TOKEN_RE.search(no_token.output)
    assert client.get("/api/v1/me", headers=bearer(admin_token)).status_code == 200

    ghost = trellis("user", "deactivate", "--email", "ghost@example.com", ok=False)
    assert ghost.exit_code != 0 and "no user 'ghost@example.com'" in ghost.stderr

    leaver = client.get("/api/v1/users", headers=bearer(admin_token)).get_json()["items"]
    leaver_id = next(u["id"] for u in leaver if u["email"] == "leaver@example.com")
    events = audit_events(client, admin_token, "")
    about_leaver = [
        e["action"]
        for e in events
        if e["target"] == f"user/{leaver_id}" or e["actor_email"] == "leaver@example.com"
    ]
    for action in ("user.created", "user.deactivated", "auth.login.success", "auth.login.failure"):
        assert action in about_leaver, (action, about_leaver)
    cli_made = [e for e in events if e["action"] in ("user.created", "user.deactivated")]
    assert all(e["detail"]["via"] == "cli" for e in cli_made if e["target"] == f"user/{leaver_id}")


# --- user list / reactivate, token list / revoke -------------------------------------------

TABLE_CELL_RE = re.compile(r"\S+(?: \S+)*")


def table(output: str) -> list[dict[str, str]]:
    """The rows of a table a ``list`` command printed, cut where the header's columns start.

    Cutting by display columns (a CJK character takes two) also checks the alignment.
    """
    header, *lines = output.rstrip("\n").splitlines()
    columns = [(m.start(), m.group()) for m in TABLE_CELL_RE.finditer(header)]
    rows = []
    for line in lines:
        placed, at = [], 0
        for char in line:
            placed.append((at, char))
            at += 2 if unicodedata.east_asian_width(char) in "WF" else 1
        row = {}
        for index, (start, name) in enumerate(columns):
            end = columns[index + 1][0] if index + 1 < len(columns) else 10**6
            row[name] = "".join(c for col, c in placed if start <= col < end).strip()
        rows.append(row)
    return rows


def events(url: str, action: str) -> list[tuple[str, dict[str, Any]]]:
    """(target, detail) of every audit event ``action``, oldest first."""
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT target, detail FROM audit_events WHERE action = :a ORDER BY id"),
                {"a": action},
            )
            return [(t, d if isinstance(d, dict) else json.loads(d)) for t, d in rows]
    finally:
        engine.dispose()


def test_user_list_shows_roles_partners_and_states(any_db: tuple[str, Run], api_app: AppOn) -> None:
    url, trellis = any_db
    trellis("init", "--admin-email", EMAIL, "--admin-password", PASSWORD)
    trellis("pack", "install", "channel_pack", "--demo")
    admin_token = last_line(trellis("token", "create", "--user", EMAIL))
    east = dealer_ids(api_app(url).test_client(), admin_token)["D-0101"]
    engine = engine_for(url)
    with engine.begin() as connection:
        connection.execute(
            sa.update(User)
            .where(User.email == "finance@example.com")
            .values(locked_until=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10))
        )
    engine.dispose()

    listed = trellis("user", "list").stdout
    assert listed.splitlines()[0].split() == [
        "id", "email", "name", "roles", "partner", "active", "admin", "locked",
    ]  # fmt: skip
    rows = {row["email"]: row for row in table(listed)}
    demo_emails = {u["email"] for u in demo_user_entries(BUILTIN_PACKS / "channel_pack")}
    assert set(rows) == {EMAIL} | demo_emails
    assert rows["east.admin@example.com"] == {
        "id": rows["east.admin@example.com"]["id"],
        "email": "east.admin@example.com",
        "name": "陈静 (East regional admin)",
        "roles": "dealer_admin",
        "partner": str(east),
        "active": "yes",
        "admin": "no",
        "locked": "no",
    }
    assert rows["hq@example.com"]["name"] == "总部管理员 HQ Admin"
    assert (rows["hq@example.com"]["admin"], rows["hq@example.com"]["partner"]) == ("yes", "")
    assert rows[EMAIL]["roles"] == "" and rows[EMAIL]["admin"] == "yes"
    assert re.fullmatch(
        r"until \d{4}-\d\d-\d\d \d\d:\d\d UTC", rows["finance@example.com"]["locked"]
    )
    ids = [int(row["id"]) for row in table(listed)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_user_reactivate_lets_them_sign_in_but_keeps_old_tokens_revoked(
    trellis: Run, sqlite_url: str, api_app: AppOn
) -> None:
    trellis("init", "--admin-email", EMAIL, "--admin-password", PASSWORD)
    trellis("user", "create", "--email", "pat@example.com", "--password", PASSWORD)
    old_token = last_line(trellis("token", "create", "--user", "pat@example.com"))
    trellis("user", "deactivate", "--email", "pat@example.com")
    pat = next(r for r in table(trellis("user", "list").stdout) if r["email"] == "pat@example.com")
    assert pat["active"] == "no"
    assert (
        form_sign_in(api_app(sqlite_url).test_client(), "pat@example.com", PASSWORD).status_code
        == 401
    )

    result = trellis("user", "reactivate", "--email", "PAT@example.com")
    assert result.stdout.strip() == (
        "user PAT@example.com reactivated (their old API tokens stay revoked)"
    )
    client = api_app(sqlite_url).test_client()
    assert form_sign_in(client, "pat@example.com", PASSWORD).status_code == 302
    assert client.get("/api/v1/me", headers=bearer(old_token)).status_code == 401
    new_token = last_line(trellis("token", "create", "--user", "pat@example.com"))
    assert client.get("/api/v1/me", headers=bearer(new_token)).status_code == 200
    assert events(sqlite_url, "user.reactivated") == [(f"user/{pat['id']}", {"via": "cli"})]

    # Nothing to do: said so, and no event.
    before = count(sqlite_url, "audit_events")
    again = trellis("user", "reactivate", "--email", "pat@example.com")
    assert again.stdout.strip() == "user pat@example.com is already active"
    assert count(sqlite_url, "audit_events") == before
    ghost = trellis("user", "reactivate", "--email", "ghost@example.com", ok=False)
    assert ghost.exit_code == 2 and ghost.stderr == "error: no user 'ghost@example.com'\n"


def test_token_list_and_revoke(any_db: tuple[str, Run], api_app: AppOn) -> None:
    url, trellis = any_db
    trellis("init", "--admin-email", EMAIL, "--admin-password", PASSWORD)
    trellis("user", "create", "--email", "pat@example.com", "--password", PASSWORD)
    admin_token = last_line(trellis("token", "create", "--user", EMAIL, "--name", "laptop"))
    pat_token = last_line(trellis("token", "create", "--user", "pat@example.com", "--name", "ci"))
    client = api_app(url).test_client()
    assert client.get("/api/v1/me", headers=bearer(pat_token)).status_code == 200

    listing = trellis("token", "list")
    assert admin_token not in listing.output and pat_token not in listing.output
    assert listing.stdout.splitlines()[0].split() == [
        "id", "user", "name", "prefix", "created", "expires", "last", "used", "revoked",
    ]  # fmt: skip
    rows = table(listing.stdout)
    assert [(r["user"], r["name"], r["prefix"]) for r in rows] == [
        (EMAIL, "laptop", admin_token[:10] + "…"),
        ("pat@example.com", "ci", pat_token[:10] + "…"),
    ]
    moment = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d")
    assert all(moment.fullmatch(r["created"]) and r["revoked"] == r["expires"] == "" for r in rows)
    assert moment.fullmatch(rows[1]["last used"]) and rows[0]["last used"] == ""
    only_pat = table(trellis("token", "list", "--user", "PAT@example.com").stdout)
    assert [r["id"] for r in only_pat] == [rows[1]["id"]]
    ghost = trellis("token", "list", "--user", "ghost@example.com", ok=False)
    assert ghost.exit_code == 2 and "no user 'ghost@example.com'" in ghost.stderr
    made = events(url, "token.created")
    assert [(d["user"], d["name"], d["via"]) for _, d in made] == [
        (EMAIL, "laptop", "cli"),
        ("pat@example.com", "ci", "cli"),
    ]

    pat_id = rows[1]["id"]
    assert trellis("token", "revoke", pat_id).stdout.strip() == f"token {pat_id} revoked"
    assert client.get("/api/v1/me", headers=bearer(pat_token)).status_code == 401
    assert client.get("/api/v1/me", headers=bearer(admin_token)).status_code == 200
    assert moment.fullmatch(table(trellis("token", "list").stdout)[1]["revoked"])
    revoked = [(f"token/{pat_id}", {"name": "ci", "user": "pat@example.com", "via": "cli"})]
    assert events(url, "token.revoked") == revoked
    again = trellis("token", "revoke", pat_id)
    assert again.stdout.startswith(f"token {pat_id} was already revoked (")
    assert events(url, "token.revoked") == revoked
    for bad in ("999999", "0", str(2**63)):
        missing = trellis("token", "revoke", bad, ok=False)
        assert missing.exit_code == 2 and missing.stderr == f"error: no token with id {bad}\n"
    assert trellis("token", "revoke", "abc", ok=False).exit_code == 2
    assert client.get("/api/v1/me", headers=bearer(admin_token)).status_code == 200


# --- refusals name the field and the reason ----------------------------------------------


def test_refusals_name_the_field_and_the_reason(
    trellis: Run, sqlite_url: str, api_app: AppOn
) -> None:
    trellis("init", "--admin-email", EMAIL, "--admin-password", PASSWORD)
    trellis("pack", "install", "channel_pack", "--demo")
    admin_token = last_line(trellis("token", "create", "--user", EMAIL))
    east = dealer_ids(api_app(sqlite_url).test_client(), admin_token)["D-0101"]
    users_before, events_before = users(sqlite_url), count(sqlite_url, "audit_events")
    new = ("user", "create", "--email", "new@example.com", "--password", PASSWORD)
    cases = [
        (
            ("user", "create", "--email", "east.admin@example.com", "--password", PASSWORD),
            ["error: a user with e-mail east.admin@example.com exists",
             "  email: east.admin@example.com belongs to another user"],
        ),
        (
            (*new, "--role", "dealer_admin"),
            ["error: role 'dealer_admin' needs a partner",
             "  partner: role 'dealer_admin' shows its users their partner's records: "
             "give the user's partner"],
        ),
        (
            (*new, "--role", "finance", "--role", "channel_manager", "--partner", str(east)),
            ["error: a partner needs a role with a partner scope",
             "  partner: none of the roles channel_manager, finance grants a partner (hierarchy)"
             " scope: leave the partner out"],
        ),
        (
            (*new, "--role", "dealer_admin", "--partner", "999999"),
            ["error: no dealer with id 999999", "  partner: no live dealer has id 999999"],
        ),
        (
            ("user", "create", "--email", "new@example.com", "--password", "short"),
            ["error: password too short", "  password: at least 8 characters"],
        ),
    ]  # fmt: skip
    for args, expected in cases:
        result = trellis(*args, ok=False)
        assert result.exit_code == 2, args
        assert result.stderr.splitlines() == expected, args
    # A message with no details prints no empty "field: " line either.
    no_details = trellis("user", "set-password", "--email", "ghost@example.com",
                         "--password", PASSWORD, ok=False)  # fmt: skip
    assert no_details.stderr == "error: no user 'ghost@example.com'\n"
    assert users(sqlite_url) == users_before
    assert count(sqlite_url, "audit_events") == events_before


def test_user_create_takes_a_partner_with_a_partner_scoped_role(trellis: Run) -> None:
    trellis("init", "--admin-email", EMAIL, "--admin-password", PASSWORD)
    trellis("pack", "install", "channel_pack", "--demo")
    # One partner-scoped role among several is enough; a head-office role needs none.
    mixed = trellis(
        "user", "create", "--email", "mixed@example.com", "--password", PASSWORD,
        "--role", "dealer_sales", "--role", "finance", "--partner", "2",
    )  # fmt: skip
    assert "created" in mixed.stdout
    office = trellis(
        "user", "create", "--email", "office@example.com", "--password", PASSWORD,
        "--role", "finance",
    )  # fmt: skip
    assert "created" in office.stdout
    rows = {row["email"]: row for row in table(trellis("user", "list").stdout)}
    assert (rows["mixed@example.com"]["roles"], rows["mixed@example.com"]["partner"]) == (
        "dealer_sales,finance",
        "2",
    )
    assert rows["office@example.com"]["partner"] == ""


# --- the command itself ------------------------------------------------------------------

TRELLIS_COMMANDS = {
    "demo", "export", "import", "init", "job", "pack", "serve", "token", "user", "worker"
}  # fmt: skip


def commands_in(help_text: str) -> set[str]:
    listed = help_text.split("Commands:", 1)[1]
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def test_help_lists_the_trellis_commands_only(trellis: Run) -> None:
    result = trellis("--help")
    assert commands_in(result.stdout) == TRELLIS_COMMANDS
    for flask_only in ("--env-file", "--app", "--debug", "routes", "shell", " run "):
        assert flask_only not in result.stdout, flask_only
    assert commands_in(trellis("token", "--help").stdout) == {"create", "list", "revoke"}
    assert commands_in(trellis("user", "-h").stdout) == {
        "create", "list", "set-password", "deactivate", "reactivate",
    }  # fmt: skip
    assert "--reset-passwords" in trellis("demo", "--help").stdout
    assert trellis("--version").stdout.strip() == "trellis, version 0.1.0"


def test_python_m_trellis_is_the_same_command(environment: dict[str, str | None]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update({k: v for k, v in environment.items() if v is not None})
    for command in ([sys.executable, "-m", "trellis"], [shutil.which("trellis") or "trellis"]):
        result = subprocess.run(
            [*command, "--help"], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert commands_in(result.stdout) == TRELLIS_COMMANDS


@pytest.mark.parametrize("command", ["demo", "serve"])
@pytest.mark.parametrize("port", ["99999", "abc", "0", "-1", "", "65536"])
def test_a_bad_port_is_a_one_line_error(
    trellis: Run, sqlite_url: str, command: str, port: str
) -> None:
    result = trellis(command, "--port", port, ok=False)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: --port: {port!r} is not a port number (1–65535)"]
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()


@pytest.mark.parametrize("command", ["demo", "serve"])
def test_a_busy_port_is_refused_before_anything_happens(
    trellis: Run, sqlite_url: str, command: str
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = trellis(command, "--port", str(port), ok=False)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: the port is in use"
    ]
    assert result.stdout == ""
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()
    unknown = trellis(
        command, "--port", str(free_port()), "--host", "no-such-host.invalid", ok=False
    )
    assert unknown.exit_code == 2 and len(unknown.stderr.splitlines()) == 1
    assert unknown.stderr.startswith("error: cannot listen on no-such-host.invalid:")


# --- the same flow on each database ------------------------------------------------------


def test_flow_on_each_database(db_url: str, tmp_path: Path, api_app: AppOn) -> None:
    """init → pack install --demo → token create → the token reads the demo data."""
    env: dict[str, str | None] = dict.fromkeys(CLEARED)
    env.update(TRELLIS_DATABASE_URL=db_url, TRELLIS_INSTANCE_PATH=str(tmp_path / "instance"))
    runner = CliRunner()

    def run(*args: str) -> Result:
        result = runner.invoke(main, list(args), env=env)
        assert result.exit_code == 0, (result.output, result.exception)
        return result

    run("init", "--admin-email", EMAIL, "--admin-password", PASSWORD)
    run("init", "--admin-email", EMAIL, "--admin-password", PASSWORD)
    run("pack", "install", "channel_pack", "--demo")
    assert "unchanged 4" in run("pack", "install", "channel_pack", "--demo").stdout
    token = last_line(run("token", "create", "--user", EMAIL))
    with api_app(db_url).test_client() as client:
        objects = client.get("/api/v1/objects", headers=bearer(token)).get_json()
        names = {o["name"] for o in objects["items"]}
        assert names == {"dealer", "product", "sales_order", "order_line"}
        dealers = client.get("/api/v1/records/dealer?limit=500", headers=bearer(token))
        assert dealers.status_code == 200
        assert len(dealers.get_json()["items"]) == 16
    engine = engine_for(db_url)
    with engine.connect() as connection:
        demo_users = len(demo_user_entries(BUILTIN_PACKS / "channel_pack"))
        assert connection.scalar(sa.select(sa.func.count()).select_from(User)) == 1 + demo_users
        assert connection.scalar(sa.select(sa.func.count()).select_from(InstalledPack)) == 1
        versions = sa.select(sa.func.count()).select_from(MetaObjectVersion)
        assert connection.scalar(versions) == 7  # the pack's staged install (test_channel_pack)
    engine.dispose()


def test_a_command_leaves_no_connection_open(pg_url: str, tmp_path: Path) -> None:
    """Each command closes its app's engine as it ends: nothing stays connected."""
    _reset_pg(pg_url)
    env: dict[str, str | None] = dict.fromkeys(CLEARED)
    env.update(TRELLIS_DATABASE_URL=pg_url, TRELLIS_INSTANCE_PATH=str(tmp_path / "instance"))
    for args in (["init", "--admin-email", EMAIL, "--admin-password", PASSWORD], ["user", "list"]):
        result = CliRunner().invoke(main, args, env=env)
        assert result.exit_code == 0, (result.output, result.exception)
    engine = engine_for(pg_url)
    try:
        with engine.connect() as connection:
            others = connection.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    finally:
        engine.dispose()
    assert others == 0


# --- the real servers ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """A ``trellis`` subprocess in its own process group, always stopped by the fixture."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        executable = shutil.which("trellis")
        assert executable, "the trellis command is not installed (pip install -e .)"
        self.log = log
        self.port = int(args[args.index("--port") + 1])
        self.handle = log.open("wb")
        self.process = subprocess.Popen(
            [executable, *args],
            env=env,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_until_up(self, timeout: float = SERVER_START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if requests.get(self.url + "/", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        pytest.fail(f"the server did not answer within {timeout}s:\n{self.output()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)  # gunicorn's master and workers
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
            except ProcessLookupError:
                pass
        self.handle.close()


@pytest.fixture
def start_server(
    tmp_path: Path, environment: dict[str, str | None]
) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(*args: str, extra_env: dict[str, str] | None = None) -> Server:
        env = {k: v for k, v in os.environ.items() if k not in CLEARED}
        env.update({k: v for k, v in environment.items() if v is not None})
        env.update(extra_env or {})
        server = Server(list(args), env, tmp_path / f"server-{len(servers)}.log")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.mark.slow
def test_serve_runs_the_api(trellis: Run, start_server: Callable[..., Server]) -> None:
    trellis("init", "--admin-email", EMAIL, "--admin-password", PASSWORD)
    trellis("pack", "install", "channel_pack", "--demo")
    token = last_line(trellis("token", "create", "--user", EMAIL))

    server = start_server("serve", "--port", str(free_port()))
    server.wait_until_up()
    anonymous = requests.get(server.url + "/api/v1/records/dealer", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthenticated"
    dealers = requests.get(server.url + "/api/v1/records/dealer", headers=bearer(token), timeout=10)
    assert dealers.status_code == 200
    items = dealers.json()["items"]
    assert len(items) == 16 and {"national", "regional", "sub_distributor"} == {
        d["level"] for d in items
    }
    wrong = requests.get(
        server.url + "/api/v1/objects", headers=bearer("trl_" + "y" * 43), timeout=10
    )
    assert wrong.status_code == 401
    server.stop()
    assert server.process.returncode is not None


@pytest.mark.slow
def test_serve_refuses_an_uninitialised_database(start_server: Callable[..., Server]) -> None:
    server = start_server("serve", "--port", str(free_port()))
    assert server.process.wait(timeout=SERVER_START_TIMEOUT) != 0
    assert "trellis init" in server.output()


def _wait_for_output(server: Server, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = pattern.search(server.output())
        if match:
            return match
        if server.process.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail(f"no {pattern.pattern!r} in the output:\n{server.output()}")


@pytest.mark.slow
def test_demo_prints_working_credentials(start_server: Callable[..., Server]) -> None:
    server = start_server("demo", "--port", str(free_port()))
    sign_in = _wait_for_output(
        server, re.compile(r"sign in:\s+(\S+@\S+) / (\S+)"), SERVER_START_TIMEOUT
    )
    email, password = sign_in.group(1), sign_in.group(2)
    assert email == "admin@example.com" and len(password) >= 8
    token = _wait_for_output(server, re.compile(r"API token:\s+(trl_\S+)"), 10).group(1)
    assert str(server.port) in server.output()
    server.wait_until_up()

    dealers = requests.get(server.url + "/api/v1/records/dealer", headers=bearer(token), timeout=10)
    assert dealers.status_code == 200
    assert len(dealers.json()["items"]) == 16
    assert requests.get(server.url + "/api/v1/records/dealer", timeout=10).status_code == 401

    # Every demo user is printed with a password; east.admin's signs in through the form.
    printed = dict(re.findall(r"^\s+(\S+@example\.com) / (\S+)\s+\(", server.output(), re.M))
    expected = {u["email"] for u in demo_user_entries(BUILTIN_PACKS / "channel_pack")}
    assert set(printed) == expected  # (the admin is on the "sign in:" line)
    east = "east.admin@example.com"
    assert len(printed[east]) >= 8 and printed[east] != password
    browser = requests.Session()

    def form_post(email: str, secret: str) -> requests.Response:
        page = browser.get(server.url + "/login", timeout=10)
        assert page.status_code == 200
        form = {"csrf_token": csrf_token(page.text), "email": email, "password": secret}
        return browser.post(server.url + "/login", data=form, allow_redirects=False, timeout=10)

    assert form_post(east, printed[east] + "x").status_code == 401
    signed_in = form_post(east, printed[east])
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/"
    home = browser.get(server.url + "/", timeout=10)
    assert home.status_code == 200 and home.url == server.url + "/"
    # Their start page, in their language: their dealer's account and its orders.
    assert "陈静 (East regional admin)" in home.text and "我的账户" in home.text
    assert "华东星辰电器有限公司" in home.text and "SO-2026-" in home.text


@pytest.mark.slow
def test_demo_uses_the_given_admin_password(
    start_server: Callable[..., Server], sqlite_url: str, tmp_path: Path
) -> None:
    server = start_server(
        "demo", "--port", str(free_port()), extra_env={"TRELLIS_ADMIN_PASSWORD": PASSWORD}
    )
    _wait_for_output(server, re.compile(r"sign in:.*" + re.escape(PASSWORD)), SERVER_START_TIMEOUT)
    server.wait_until_up()
    from werkzeug.security import check_password_hash

    engine = engine_for(sqlite_url)
    with engine.connect() as connection:
        stored = connection.scalar(
            sa.select(User.password_hash).where(User.email == "admin@example.com")
        )
    engine.dispose()
    assert check_password_hash(str(stored), PASSWORD)
    # The administrator's own password is used, not written down with the generated ones.
    written = (tmp_path / "instance" / "demo-credentials.json").read_text(encoding="utf-8")
    assert PASSWORD not in written
    kept = json.loads(written)["passwords"]
    assert "admin@example.com" not in kept and "east.admin@example.com" in kept


def test_demo_refuses_a_short_admin_password(trellis: Run, sqlite_url: str) -> None:
    env = {"TRELLIS_ADMIN_PASSWORD": "short"}
    result = trellis("demo", "--port", str(free_port()), env=env, ok=False)
    assert result.exit_code != 0 and "password too short" in result.stderr
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()  # refused before the database


# --- the demo, run twice -------------------------------------------------------------------

ADMIN_LINE_RE = re.compile(r"sign in:\s+(\S+@\S+) / (\S+)")
USER_LINE_RE = re.compile(r"^\s+(\S+@example\.com) / (\S+)\s+\(", re.M)


def demo_sign_ins(server: Server) -> tuple[dict[str, str], str]:
    """Every e-mail → password the demo printed (admin included), and its API token."""
    token = _wait_for_output(server, re.compile(r"API token:\s+(trl_\S+)"), SERVER_START_TIMEOUT)
    admin = ADMIN_LINE_RE.search(server.output())
    assert admin, server.output()
    passwords = {admin.group(1): admin.group(2), **dict(USER_LINE_RE.findall(server.output()))}
    return passwords, token.group(1)


def password_hashes(url: str) -> dict[str, str]:
    engine = engine_for(url)
    try:
        with engine.connect() as connection:
            return dict(connection.execute(sa.select(User.email, User.password_hash)).all())
    finally:
        engine.dispose()


def run_demo(port: int, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trellis", "demo", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=SERVER_START_TIMEOUT * 2,
    )


def form_sign_in_at(url: str, email: str, password: str) -> int:
    browser = requests.Session()
    page = browser.get(url + "/login", timeout=10)
    form = {"csrf_token": csrf_token(page.text), "email": email, "password": password}
    return browser.post(url + "/login", data=form, allow_redirects=False, timeout=10).status_code


@pytest.mark.slow
def test_demo_twice_keeps_the_sign_ins_the_first_printed(
    start_server: Callable[..., Server], trellis: Run, sqlite_url: str, tmp_path: Path
) -> None:
    first = start_server("demo", "--port", str(free_port()))
    printed, token = demo_sign_ins(first)
    every_demo_user = {u["email"] for u in demo_user_entries(BUILTIN_PACKS / "channel_pack")}
    assert set(printed) == {"admin@example.com"} | every_demo_user
    first.wait_until_up()
    credentials = tmp_path / "instance" / "demo-credentials.json"
    assert credentials.stat().st_mode & 0o777 == 0o600
    stored, hashes = credentials.read_bytes(), password_hashes(sqlite_url)
    tokens = count(sqlite_url, "api_tokens")

    # A second demo while the first runs, then one on a port another program holds: each
    # is refused on one line before the database or a password is touched.
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(TRELLIS_DATABASE_URL=sqlite_url, TRELLIS_INSTANCE_PATH=str(tmp_path / "instance"))
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        for port in (first.port, held.getsockname()[1]):
            refused = run_demo(port, env)
            assert refused.returncode == 2, refused.stderr
            expected = f"error: cannot listen on 127.0.0.1:{port}: the port is in use"
            assert refused.stderr.splitlines() == [expected] and refused.stdout == ""
    assert password_hashes(sqlite_url) == hashes and credentials.read_bytes() == stored
    assert count(sqlite_url, "api_tokens") == tokens
    east = "east.admin@example.com"
    assert form_sign_in_at(first.url, east, printed[east]) == 302
    first.stop()

    # Run again once a password was changed by hand: the others are printed as they were.
    trellis("user", "set-password", "--email", "east.sales@example.com", "--password", PASSWORD)
    second = start_server("demo", "--port", str(free_port()))
    again, same_token = demo_sign_ins(second)
    assert again == {k: v for k, v in printed.items() if k != "east.sales@example.com"}
    assert same_token == token and count(sqlite_url, "api_tokens") == tokens
    unknown = "password not shown (not made by `trellis demo`, or changed since)"
    assert f"east.sales@example.com   (dealer_sales): {unknown}" in second.output()
    assert "--reset-passwords" in second.output()
    second.wait_until_up()
    assert form_sign_in_at(second.url, east, printed[east]) == 302
    second.stop()

    # --reset-passwords gives everyone a new one; the old ones stop working.
    third = start_server("demo", "--port", str(free_port()), "--reset-passwords")
    reset, kept_token = demo_sign_ins(third)
    assert set(reset) == set(printed) and kept_token == token
    assert all(reset[email] != printed[email] for email in printed)
    third.wait_until_up()
    assert form_sign_in_at(third.url, east, printed[east]) == 401
    assert form_sign_in_at(third.url, east, reset[east]) == 302
    assert requests.get(third.url + "/api/v1/me", headers=bearer(token), timeout=10).ok
    assert len(events(sqlite_url, "user.password_set")) == 1 + len(every_demo_user)
    third.stop()
    assert json.loads(credentials.read_text())["passwords"] == reset

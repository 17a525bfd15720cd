"""The ``trellis`` command (also reachable as ``flask --app trellis``)."""

from __future__ import annotations

import os
import secrets
import sys
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from trellis import create_app
from trellis.exceptions import NotFound, TrellisError
from trellis.extensions import db

DEMO_ADMIN_EMAIL = "admin@example.com"


def _registry() -> Any:
    return current_app.extensions["trellis.registry"]


def _fail(exc: TrellisError) -> None:
    click.echo(f"error: {exc.message}", err=True)
    for detail in exc.details:
        click.echo(f"  {detail.get('field', '')}: {detail.get('message', '')}", err=True)
    sys.exit(2)


def _require_database() -> None:
    """Refuse with a clear message, not a traceback, when ``trellis init`` has not run."""
    assert db.engine is not None
    with db.engine.connect() as connection:
        ready = sa.inspect(connection).has_table("meta_revision")
    if not ready:
        _fail(TrellisError(f"the database {_safe_url()} is not set up: run `trellis init` first"))


@click.group(
    cls=FlaskGroup,
    create_app=create_app,
    add_default_commands=False,
    add_version_option=False,
    load_dotenv=False,
)
def main() -> None:
    """Trellis: a low-code platform."""


def _init(admin_email: str | None, admin_password: str | None) -> bool:
    from trellis.platform.runtime.bootstrap import init_database

    assert db.engine is not None
    with db.session() as session:
        return init_database(db.engine, session, admin_email, admin_password, report=click.echo)


@main.command("init")
@click.option("--admin-email", envvar="TRELLIS_ADMIN_EMAIL", help="e-mail of the administrator")
@click.option(
    "--admin-password",
    envvar="TRELLIS_ADMIN_PASSWORD",
    help="password of the administrator (8 characters at least)",
)
@with_appcontext
def init_command(admin_email: str | None, admin_password: str | None) -> None:
    """Create or upgrade the database and create (or update) the admin. Idempotent."""
    if bool(admin_email) != bool(admin_password):
        raise click.UsageError("give both --admin-email and --admin-password, or neither")
    try:
        created = _init(admin_email, admin_password)
    except TrellisError as exc:
        _fail(exc)
    click.echo(f"database ready: {_safe_url()}")
    if admin_email:
        click.echo(f"admin {admin_email} {'created' if created else 'updated'}")


def _safe_url() -> str:
    assert db.engine is not None
    return db.engine.url.render_as_string(hide_password=True)


@main.group("token")
def token_group() -> None:
    """API tokens."""


@token_group.command("create")
@click.option("--user", "email", required=True, help="e-mail of the token's user")
@click.option("--name", default="cli", help="a name to recognise the token by")
@with_appcontext
def token_create(email: str, name: str) -> None:
    """Create an API token; it is printed once, as the last line."""
    from trellis.platform.runtime.identity.tokens import issue_token

    _require_database()
    try:
        with db.session() as session:
            token = issue_token(session, email, name=name)
            session.commit()
    except TrellisError as exc:
        _fail(exc)
    click.echo(f"token for {email} (shown once, store it safely):")
    click.echo(token)


@main.group("pack")
def pack_group() -> None:
    """Packs of metadata."""


@pack_group.command("install")
@click.argument("path_or_name")
@click.option("--demo", is_flag=True, help="also load the pack's demo data (once)")
@with_appcontext
def pack_install(path_or_name: str, demo: bool) -> None:
    """Install or upgrade a pack from a folder or by built-in name. Idempotent."""
    result = _install(path_or_name, demo)
    if result.demo_users:
        click.echo("the demo users have random passwords: set one with `trellis user set-password`")


def _install(path_or_name: str, demo: bool) -> Any:
    from trellis.platform.runtime.packs import install_pack, resolve_pack

    _require_database()
    registry = _registry()
    try:
        with db.session() as session:
            result = install_pack(
                session, registry, resolve_pack(path_or_name), author_id=None, with_demo=demo
            )
            session.commit()
    except TrellisError as exc:
        registry.invalidate()
        _fail(exc)

    def tally(names: list[str], roles: bool) -> int:
        return sum(name.startswith("role ") == roles for name in names)

    counts = {
        kind: f"created {tally(result.created, roles)}, updated {tally(result.updated, roles)}, "
        f"unchanged {tally(result.unchanged, roles)} {kind}(s)"
        for kind, roles in (("object", False), ("role", True))
    }
    click.echo(
        f"pack {result.name} {result.version}: {counts['object']}; {counts['role']}"
        + (f", {result.demo_records} demo record(s)" if result.demo_records else "")
        + (f", {len(result.demo_users)} demo user(s)" if result.demo_users else "")
    )
    return result


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
@click.option("--threads", default=4, show_default=True, type=int)
def serve_command(host: str, port: int, workers: int, threads: int) -> None:
    """Run the production WSGI server (gunicorn)."""
    serve(host, port, workers, threads)


def serve(host: str, port: int, workers: int, threads: int) -> None:
    # Build the app once before forking: bad settings fail here, not in every worker, and
    # the generated instance secret exists before the workers would race to create it.
    with create_app().app_context():
        _require_database()
        assert db.engine is not None
        db.engine.dispose()  # no pooled connection may cross the fork

    run_gunicorn(create_app, gunicorn_settings(host, port, workers, threads))


def gunicorn_settings(host: str, port: int, workers: int, threads: int) -> dict[str, Any]:
    """The settings ``trellis serve`` gives gunicorn (``bench/http_api.py`` serves its
    baseline with the same ones, so the two are compared under one server)."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "accesslog": "-",
    }


def run_gunicorn(load_app: Any, settings: dict[str, Any]) -> None:
    """Serve the app ``load_app()`` builds in each worker with gunicorn and ``settings``."""
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Flask:
            app: Flask = load_app()
            return app

    Server().run()


def _reset_demo_passwords(session: Any) -> list[tuple[str, str, list[str]]]:
    """Give each demo user of the channel pack a fresh password, to print.

    As any password change does, this ends their old sessions and clears a sign-in lock.
    """
    from trellis.platform.runtime.identity import UserService
    from trellis.platform.runtime.models import User
    from trellis.platform.runtime.packs import demo_user_entries, resolve_pack

    service = UserService(session, _registry(), None)
    printed = []
    for entry in demo_user_entries(resolve_pack("channel_pack")):
        user = session.scalar(sa.select(User).where(User.email == entry["email"].strip().lower()))
        if user is None:
            continue
        user_password = secrets.token_urlsafe(9)
        service.update(user.id, {"password": user_password})
        printed.append((user.email, user_password, list(entry.get("roles", []))))
    return printed


@main.group("user")
def user_group() -> None:
    """Users: create, set a password, deactivate."""


@user_group.command("create")
@click.option("--email", required=True)
@click.option("--password", required=True, help="8 characters at least")
@click.option("--name", default="")
@click.option("--role", "roles", multiple=True, help="a role name (repeatable)")
@click.option("--partner", type=int, default=None, help="id of the user's partner record")
@click.option("--admin", is_flag=True, help="a platform administrator (bypasses roles)")
@with_appcontext
def user_create(
    email: str, password: str, name: str, roles: tuple[str, ...], partner: int | None, admin: bool
) -> None:
    """Create a user with roles and, for partner staff, their partner record."""
    from trellis.platform.runtime import audit
    from trellis.platform.runtime.identity import UserService

    _require_database()
    registry = _registry()
    data: dict[str, Any] = {"email": email, "password": password, "roles": list(roles)}
    if name:
        data["name"] = name
    if partner is not None:
        data["partner"] = partner
    if admin:
        data["is_admin"] = True
    try:
        with db.session() as session:
            service = UserService(session, registry, None)
            user = service.create(data)
            audit.record(
                session,
                "user.created",
                target=f"user/{user.id}",
                detail={"email": user.email, "roles": list(roles), "via": "cli"},
            )
            session.commit()
            click.echo(f"user {user.email} created (id {user.id})")
    except TrellisError as exc:
        _fail(exc)


def _update_user(email: str, change: dict[str, Any], action: str) -> None:
    import sqlalchemy as sa

    from trellis.platform.runtime import audit
    from trellis.platform.runtime.identity import UserService
    from trellis.platform.runtime.models import User

    _require_database()
    try:
        with db.session() as session:
            user_id = session.scalar(sa.select(User.id).where(User.email == email.strip().lower()))
            if user_id is None:
                raise NotFound(f"no user {email!r}")
            UserService(session, _registry(), None).update(user_id, change)
            audit.record(session, action, target=f"user/{user_id}", detail={"via": "cli"})
            session.commit()
    except TrellisError as exc:
        _fail(exc)


@user_group.command("set-password")
@click.option("--email", required=True)
@click.option("--password", required=True)
@with_appcontext
def user_set_password(email: str, password: str) -> None:
    """Set a user's password (it also clears a sign-in lock)."""
    _update_user(email, {"password": password}, "user.password_set")
    click.echo(f"password of {email} set")


@user_group.command("deactivate")
@click.option("--email", required=True)
@with_appcontext
def user_deactivate(email: str) -> None:
    """Deactivate a user: their sign-ins and API tokens stop working at once."""
    _update_user(email, {"is_active": False}, "user.deactivated")
    click.echo(f"user {email} deactivated")


@main.command("demo")
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
@with_appcontext
def demo_command(port: int, host: str) -> None:
    """Set up the channel pack with demo data and serve it."""
    from trellis.platform.runtime.identity.tokens import issue_token

    password = os.environ.get("TRELLIS_ADMIN_PASSWORD") or secrets.token_urlsafe(9)
    try:
        _init(DEMO_ADMIN_EMAIL, password)
    except TrellisError as exc:  # e.g. a TRELLIS_ADMIN_PASSWORD that is too short
        _fail(exc)
    _install("channel_pack", demo=True)
    with db.session() as session:
        token = issue_token(session, DEMO_ADMIN_EMAIL, name="demo")
        demo_users = _reset_demo_passwords(session)
        session.commit()
    click.echo("")
    click.echo(f"Trellis demo on http://{host}:{port}")
    click.echo(f"  sign in:   {DEMO_ADMIN_EMAIL} / {password}   (platform administrator)")
    for email, user_password, roles in demo_users:
        click.echo(f"             {email} / {user_password}   ({', '.join(roles)})")
    click.echo(f"  API token: {token}")
    click.echo(
        f"  try:       curl -H 'Authorization: Bearer {token}' "
        f"http://{host}:{port}/api/v1/records/dealer"
    )
    click.echo("")
    assert db.engine is not None
    db.engine.dispose()
    serve(host, port, workers=2, threads=4)

"""The ``trellis`` command: a plain click group, each command building the app it needs.

``flask --app trellis run`` still works through Flask's own CLI (the app factory), but the
platform's commands live here only, so ``trellis --help`` lists nothing but them.
"""

from __future__ import annotations

import datetime as dt
import errno
import functools
import json
import os
import secrets
import socket
import sys
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import click
import sqlalchemy as sa
from flask import Flask, current_app
from werkzeug.security import check_password_hash

from trellis import __version__, create_app
from trellis.exceptions import AuthenticationRequired, NotFound, TrellisError
from trellis.extensions import database_of, db
from trellis.platform.metadata.fieldtypes import INT64_MAX
from trellis.platform.runtime import audit
from trellis.platform.runtime.identity import UserService
from trellis.platform.runtime.identity.passwords import check_password
from trellis.platform.runtime.identity.tokens import (
    authenticate_token,
    hash_token,
    issue_token,
    revoke_token,
)
from trellis.platform.runtime.models import ApiToken, User, UserRole, as_utc, utcnow
from trellis.platform.runtime.packs import (
    InstallResult,
    demo_user_entries,
    install_pack,
    resolve_pack,
)

DEMO_ADMIN_EMAIL = "admin@example.com"
DEMO_CREDENTIALS_FILE = "demo-credentials.json"
UNKNOWN_PASSWORD = "password not shown (not made by `trellis demo`, or changed since)"

P = ParamSpec("P")
R = TypeVar("R")


class CommandError(click.ClickException):
    """A refusal on one line (``error: …`` on stderr, exit code 2), never a traceback."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        """Print ``error: <message>`` to stderr (or ``file``), without click's usage lines."""
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class PortType(click.ParamType):
    """A TCP port, 1–65535; anything else is a one-line error, not a usage screen."""

    name = "port"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """The port as an int; a bool, a non-number or one outside 1–65535 is a ``CommandError``."""
        if isinstance(value, int) and not isinstance(value, bool):
            port = value
        else:
            try:
                port = int(str(value).strip())
            except ValueError:
                port = 0
        if not 1 <= port <= 65535:
            raise CommandError(f"--port: {value!r} is not a port number (1–65535)")
        return port


PORT = PortType()


def with_app(command: Callable[P, R]) -> Callable[P, R]:
    """Run ``command`` inside an app built from the ``TRELLIS_*`` settings."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        app = create_app()
        try:
            with app.app_context():
                return command(*args, **kwargs)
        finally:
            database_of(app).engine.dispose()  # no connection outlives the command

    return run


def _registry() -> Any:
    return current_app.extensions["trellis.registry"]


def _fail(exc: TrellisError) -> None:
    """Print the refusal and each detail as ``field: message`` (empty parts left out)."""
    click.echo(f"error: {exc.message}", err=True)
    for detail in exc.details:
        parts = (str(detail.get("field") or ""), str(detail.get("message") or ""))
        line = ": ".join(part for part in parts if part)
        if line:
            click.echo(f"  {line}", err=True)
    sys.exit(2)


def _require_database() -> None:
    """Refuse with a clear message, not a traceback, when ``trellis init`` has not run."""
    with db.engine.connect() as connection:
        ready = sa.inspect(connection).has_table("meta_revision")
    if not ready:
        _fail(TrellisError(f"the database {_safe_url()} is not set up: run `trellis init` first"))


def check_port_free(host: str, port: int) -> None:
    """Refuse (one line) when nothing could listen on ``host:port`` — before anything changes."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            # As gunicorn does: SO_REUSEADDR lets a port in TIME_WAIT pass, not a listened one.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except socket.gaierror as exc:
        raise CommandError(
            f"cannot listen on {host}:{port}: unknown host ({exc.strerror})"
        ) from None
    except OSError as exc:
        reason = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise CommandError(f"cannot listen on {host}:{port}: {reason}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trellis")
def main() -> None:
    """Trellis: a low-code platform. Settings come from TRELLIS_* environment variables."""


def _find_user(session: Any, email: str) -> User:
    user = session.scalar(sa.select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFound(f"no user {email!r}")
    return user


def _safe_url() -> str:
    return db.engine.url.render_as_string(hide_password=True)


def _moment(moment: dt.datetime | None) -> str:
    return as_utc(moment).strftime("%Y-%m-%d %H:%M") if moment else ""


def _width(text: str) -> int:
    """Columns ``text`` takes in a terminal: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _echo_table(headers: list[str], rows: Iterable[list[str]]) -> None:
    table = [headers, *rows]
    widths = [max(_width(row[i]) for row in table) for i in range(len(headers))]
    for row in table:
        cells = (
            cell + " " * (width - _width(cell)) for cell, width in zip(row, widths, strict=True)
        )
        click.echo("  ".join(cells).rstrip())


# --- init --------------------------------------------------------------------------------


def _init(admin_email: str | None, admin_password: str | None) -> bool:
    """Migrate; then create or update the admin, audited with the change."""
    from trellis.platform.runtime.bootstrap import init_database

    if admin_password is not None:
        check_password(admin_password)  # before the database is touched
    with db.session() as session:
        init_database(db.engine, session, None, None, report=click.echo)
        if not (admin_email and admin_password):
            return False
        user, created = UserService(session, _registry(), None).ensure_admin(
            admin_email, admin_password
        )
        _audit_admin(session, user, created)
        session.commit()
        return created


def _audit_admin(session: Any, user: User, created: bool) -> None:
    if created:
        detail = {"email": user.email, "is_admin": True, "via": "cli"}
        audit.record(session, "user.created", target=f"user/{user.id}", detail=detail)
    else:
        detail = {"email": user.email, "changed": ["is_admin", "password"], "via": "cli"}
        audit.record(session, "user.updated", target=f"user/{user.id}", detail=detail)


@main.command("init")
@click.option("--admin-email", envvar="TRELLIS_ADMIN_EMAIL", help="e-mail of the administrator")
@click.option(
    "--admin-password",
    envvar="TRELLIS_ADMIN_PASSWORD",
    help="password of the administrator (8 characters at least)",
)
@with_app
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


# --- tokens ------------------------------------------------------------------------------


@main.group("token")
def token_group() -> None:
    """API tokens: create, list, revoke."""


def _issue_token(session: Any, email: str, name: str) -> str:
    """A new token for ``email``, audited as the API's ``token.created`` is."""
    token = issue_token(session, email, name=name)
    row = session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    audit.record(
        session,
        "token.created",
        target=f"token/{row.id}",
        detail={"name": row.name, "user": email.strip().lower(), "via": "cli"},
    )
    return token


@token_group.command("create")
@click.option("--user", "email", required=True, help="e-mail of the token's user")
@click.option("--name", default="cli", help="a name to recognise the token by")
@with_app
def token_create(email: str, name: str) -> None:
    """Create an API token; it is printed once, as the last line."""
    _require_database()
    try:
        with db.session() as session:
            token = _issue_token(session, email, name)
            session.commit()
    except TrellisError as exc:
        _fail(exc)
    click.echo(f"token for {email} (shown once, store it safely):")
    click.echo(token)


@token_group.command("list")
@click.option("--user", "email", default=None, help="only the tokens of this e-mail")
@with_app
def token_list(email: str | None) -> None:
    """List API tokens: their id, prefix and dates, never the tokens themselves."""
    _require_database()
    query = sa.select(ApiToken, User.email).join(User, User.id == ApiToken.user_id)
    try:
        with db.session() as session:
            if email is not None:
                query = query.where(ApiToken.user_id == _find_user(session, email).id)
            rows = session.execute(query.order_by(ApiToken.id)).all()
    except TrellisError as exc:
        _fail(exc)
    if not rows:
        click.echo("no tokens")
        return
    headers = ["id", "user", "name", "prefix", "created", "expires", "last used", "revoked"]
    _echo_table(headers, (_token_row(token, owner) for token, owner in rows))


def _token_row(token: ApiToken, owner: str) -> list[str]:
    moments = (token.created_at, token.expires_at, token.last_used_at, token.revoked_at)
    return [str(token.id), owner, token.name, token.prefix + "…", *map(_moment, moments)]


@token_group.command("revoke")
@click.argument("token_id", metavar="ID", type=int)
@with_app
def token_revoke(token_id: int) -> None:
    """Revoke the API token with this id (see `trellis token list`): it stops at once."""
    _require_database()
    try:
        with db.session() as session:
            row = session.get(ApiToken, token_id) if 1 <= token_id <= INT64_MAX else None
            if row is None:
                raise NotFound(f"no token with id {token_id}")
            if row.revoked_at is not None:
                click.echo(f"token {token_id} was already revoked ({_moment(row.revoked_at)} UTC)")
                return
            revoke_token(session, row.user_id, token_id)
            owner = session.get(User, row.user_id)
            detail = {"name": row.name, "user": owner.email if owner else None, "via": "cli"}
            audit.record(session, "token.revoked", target=f"token/{token_id}", detail=detail)
            session.commit()
    except TrellisError as exc:
        _fail(exc)
    click.echo(f"token {token_id} revoked")


# --- packs -------------------------------------------------------------------------------


@main.group("pack")
def pack_group() -> None:
    """Packs of metadata."""


@pack_group.command("install")
@click.argument("path_or_name")
@click.option("--demo", is_flag=True, help="also load the pack's demo data (once)")
@with_app
def pack_install(path_or_name: str, demo: bool) -> None:
    """Install or upgrade a pack from a folder or by built-in name. Idempotent."""
    result = _install(path_or_name, demo)
    if result.demo_users:
        click.echo("the demo users have random passwords: set one with `trellis user set-password`")


# What a pack install reports, in this order ("role order_flow" is a role, "dealer" an object).
KINDS = ("object", "role", "workflow", "automation")


def _install(path_or_name: str, demo: bool) -> InstallResult:
    _require_database()
    registry = _registry()
    try:
        with db.session() as session:
            result = install_pack(
                session, registry, resolve_pack(path_or_name), author_id=None, with_demo=demo
            )
            _audit_install(session, result)
            session.commit()
    except TrellisError as exc:
        registry.invalidate()
        _fail(exc)

    def kind_of(name: str) -> str:  # "role x", "automation y"; an object is its bare name
        prefix = name.partition(" ")[0]
        return prefix if prefix in KINDS[1:] and " " in name else "object"

    def tally(names: list[str], kind: str) -> int:
        return sum(kind_of(name) == kind for name in names)

    counts = {
        kind: f"created {tally(result.created, kind)}, updated {tally(result.updated, kind)}, "
        f"unchanged {tally(result.unchanged, kind)} {kind}(s)"
        for kind in KINDS
    }
    click.echo(
        f"pack {result.name} {result.version}: "
        + "; ".join(counts[kind] for kind in KINDS)
        + (f", {result.demo_records} demo record(s)" if result.demo_records else "")
        + (f", {len(result.demo_users)} demo user(s)" if result.demo_users else "")
    )
    return result


def _audit_install(session: Any, result: InstallResult) -> None:
    if not (result.created or result.updated or result.demo_records or result.demo_users):
        return  # an install that changed nothing leaves no event
    detail = {
        "version": result.version,
        "created": result.created,
        "updated": result.updated,
        "demo_records": result.demo_records,
        "demo_users": [user["email"] for user in result.demo_users],
        "via": "cli",
    }
    audit.record(session, "pack.installed", target=f"pack/{result.name}", detail=detail)


# --- jobs --------------------------------------------------------------------------------


@main.command("worker")
@click.option(
    "--queues",
    default="default",
    show_default=True,
    help="comma-separated RQ queues to work on, in order of priority",
)
@click.option("--burst", is_flag=True, help="run what is due now, relay the outbox, then exit")
@with_app
def worker_command(queues: str, burst: bool) -> None:
    """Run jobs (RQ with TRELLIS_REDIS_URL, else from the database), relay the outbox,
    re-queue jobs of dead workers and enqueue scheduled jobs. Stop with Ctrl-C / SIGTERM."""
    from trellis.platform.runtime.jobs.definitions import JOB_NAME
    from trellis.platform.runtime.jobs.worker import run_worker

    _require_database()
    names = [name.strip() for name in queues.split(",") if name.strip()]
    bad = [name for name in names if not JOB_NAME.match(name)]
    if not names or bad:
        raise CommandError(f"--queues: not queue names: {', '.join(bad) or repr(queues)}")
    mode = "RQ on " + _safe_redis_url() if current_app.config.get("REDIS_URL") else "no Redis"
    click.echo(f"worker on {', '.join(names)} ({mode}){' in burst mode' if burst else ''}")
    run_worker(current_app._get_current_object(), names, burst=burst)  # type: ignore[attr-defined]


def _safe_redis_url() -> str:
    """The Redis URL without its password, to print."""
    parts = urlsplit(current_app.config["REDIS_URL"])
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


@main.group("job")
def job_group() -> None:
    """Background jobs: show, list, retry."""


@job_group.command("show")
@click.argument("job_id", metavar="ID", type=int)
@with_app
def job_show(job_id: int) -> None:
    """Show a job: its status, attempts, progress, result or error."""
    from trellis.platform.runtime.jobs.service import get_job

    _require_database()
    try:
        with db.session() as session:
            job = get_job(session, job_id)
    except TrellisError as exc:
        _fail(exc)
    for label, value in _job_lines(job):
        click.echo(f"{label + ':':<10} {value}")


def _job_lines(job: Any) -> list[tuple[str, str]]:
    lines = [
        ("job", f"{job.id} {job.name}"),
        ("status", job.status),
        ("queue", job.queue),
        ("key", job.key or "-"),
        ("attempts", f"{job.attempts} of {job.max_attempts}"),
        ("progress", _progress_text(job)),
        ("created", _moment(job.created_at)),
        ("run at", _moment(job.run_at)),
        ("started", _moment(job.started_at)),
        ("finished", _moment(job.finished_at)),
        ("payload", json.dumps(job.payload, ensure_ascii=False)),
    ]
    if job.result is not None:
        lines.append(("result", json.dumps(job.result, ensure_ascii=False)))
    if job.error:
        lines.append(("error", job.error.strip().splitlines()[-1]))
    return lines


def _progress_text(job: Any) -> str:
    """``42 / 100 (42%) message``, ``42 message`` without a total, ``-`` before any report."""
    if job.progress_done is None:
        return "-"
    text = str(job.progress_done)
    if job.progress_total:
        percent = min(100, round(100 * job.progress_done / job.progress_total))
        text += f" / {job.progress_total} ({percent}%)"
    return f"{text} {job.progress_message}".rstrip()


@job_group.command("list")
@click.option("--failed", is_flag=True, help="only the failed jobs")
@click.option(
    "--status",
    type=click.Choice(["queued", "running", "done", "failed"]),
    default=None,
    help="only jobs in this status",
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@with_app
def job_list(failed: bool, status: str | None, limit: int) -> None:
    """List jobs, newest first."""
    from trellis.platform.runtime.jobs.service import list_jobs

    _require_database()
    with db.session() as session:
        rows = list_jobs(session, status="failed" if failed else status, limit=limit)
    if not rows:
        click.echo("no jobs")
        return
    headers = ["id", "name", "status", "attempts", "progress", "created", "error"]
    _echo_table(headers, (_job_row(job) for job in rows))


def _job_row(job: Any) -> list[str]:
    error = job.error.strip().splitlines()[-1][:60] if job.error else ""
    attempts = f"{job.attempts}/{job.max_attempts}"
    return [
        str(job.id),
        job.name,
        job.status,
        attempts,
        _progress_text(job),
        _moment(job.created_at),
        error,
    ]


@job_group.command("retry")
@click.argument("job_id", metavar="ID", type=int)
@with_app
def job_retry(job_id: int) -> None:
    """Queue a failed job again, with a fresh set of attempts."""
    from trellis.platform.runtime.jobs.service import retry_job

    _require_database()
    try:
        with db.session() as session:
            job = retry_job(session, job_id)
            audit.record(
                session,
                "job.retried",
                target=f"job/{job_id}",
                detail={"name": job.name, "via": "cli"},
            )
            session.commit()
    except TrellisError as exc:
        _fail(exc)
    click.echo(f"job {job_id} queued again")


# --- import and export -------------------------------------------------------------------


def _acting_caller(session: Any, email: str | None) -> Any:
    """The ``Caller`` of ``--user`` (their rights apply), or ``None``: the system."""
    if email is None:
        return None
    from trellis.platform.runtime.api import caller_of
    from trellis.platform.runtime.identity.sessions import identity_of_user

    identity = identity_of_user(session, _find_user(session, email).id)
    _registry().ensure_current(session, identity.revision)
    return caller_of(identity)


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    """``--map a=b`` style options as a dict (a value without ``=`` is a one-line error)."""
    pairs = {}
    for value in values:
        left, sep, right = value.partition("=")
        if not sep or not left:
            raise CommandError(f"{option}: {value!r} is not NAME=VALUE")
        pairs[left] = right
    return pairs


@main.command("import")
@click.argument("object_name", metavar="OBJECT")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--user", "email", default=None, help="act as this user, with their rights")
@click.option(
    "--mode",
    type=click.Choice(["all_or_nothing", "skip_invalid"]),
    default="all_or_nothing",
    show_default=True,
)
@click.option("--map", "maps", multiple=True, help="COLUMN=FIELD (repeatable; default: by name)")
@click.option("--lookup", "lookups", multiple=True, help="FIELD=KEY: match a lookup by KEY")
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path),
    default=None,
    help="write the per-row report (CSV) here",
)
@with_app
def import_command(
    object_name: str,
    path: Path,
    email: str | None,
    mode: str,
    maps: tuple[str, ...],
    lookups: tuple[str, ...],
    report_path: Path | None,
) -> None:
    """Import records of OBJECT from a CSV or XLSX file, through the one write path."""
    from trellis.platform.runtime import files
    from trellis.platform.runtime.imports import ImportLimits, ImportService, report_csv, run_here

    _require_database()
    column_map, lookup_keys = _pairs(maps, "--map"), _pairs(lookups, "--lookup")
    try:
        with db.session() as session:
            _registry().ensure_current(session)
            service = ImportService(
                session,
                _registry(),
                _acting_caller(session, email),
                files.current_store(),
                ImportLimits.of_app(),
            )
            run = service.upload(object_name, path.read_bytes(), path.name)
            service.configure(run, column_map or run.mapping, lookup_keys, mode)

            def progress(done: int, total: int | None, _message: str) -> None:
                click.echo(f"  {done}/{total} rows", err=True)

            run_here(session, run, progress)
            click.echo(f"import {run.id}: {run.status}: {run.message}")
            for entry in run.report[:20]:
                click.echo(f"  row {entry['row']} {entry['column']}: {entry['message']}")
            if len(run.report) > 20:
                click.echo(f"  … and {len(run.report) - 20} more (see --report)")
            if report_path is not None:
                report_path.write_text(report_csv(run), encoding="utf-8")
            failed = run.status != "succeeded" or bool(run.error_count)
    except TrellisError as exc:
        _fail(exc)
    if failed:
        sys.exit(1)


@main.command("export")
@click.argument("object_name", metavar="OBJECT")
@click.option("--user", "email", default=None, help="act as this user, with their rights")
@click.option(
    "--format", "kind", type=click.Choice(["csv", "xlsx"]), default="csv", show_default=True
)
@click.option(
    "--filter", "filter_text", default=None, help='a list filter, e.g. [["level","=","gold"]]'
)
@click.option("--sort", "sort_text", default=None, help="e.g. -created_at")
@click.option("--fields", "fields_text", default=None, help="comma-separated field names")
@click.option("--output", "-o", "output", type=click.Path(path_type=Path), required=True)
@with_app
def export_command(
    object_name: str,
    email: str | None,
    kind: str,
    filter_text: str | None,
    sort_text: str | None,
    fields_text: str | None,
    output: Path,
) -> None:
    """Export the records of OBJECT a filter matches, as the API's export does."""
    from trellis import defaults
    from trellis.platform.runtime.imports import write_xlsx
    from trellis.platform.runtime.query import parse_list_query
    from trellis.platform.runtime.records import RecordService
    from trellis.platform.runtime.records.serialise import as_csv

    _require_database()
    try:
        with db.session() as session:
            _registry().ensure_current(session)
            service = RecordService(session, _registry(), _acting_caller(session, email))
            meta = _registry().get(object_name)
            query = parse_list_query(
                meta,
                filter_text=filter_text,
                sort_text=sort_text,
                limit_text=None,
                cursor=None,
                fields_text=fields_text,
                default_limit=defaults.PAGE_SIZE_DEFAULT,
                max_limit=defaults.PAGE_SIZE_MAX,
                hidden=service.access.hidden(meta),
            )
            names, rows = service.export_rows(object_name, query)
            session.commit()  # the audit of an admin's bypass, if any
    except TrellisError as exc:
        _fail(exc)
    if kind == "xlsx":
        output.write_bytes(write_xlsx(names, rows))
    else:
        output.write_text(as_csv(names, rows), encoding="utf-8")
    click.echo(f"{len(rows)} record(s) written to {output}")


# --- serve -------------------------------------------------------------------------------


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=PORT)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 256))
def serve_command(host: str, port: int, workers: int, threads: int) -> None:
    """Run the production WSGI server (gunicorn)."""
    serve(host, port, workers, threads)


def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Serve with gunicorn on ``host:port`` once the port and the database are known good."""
    check_port_free(host, port)
    # Build the app once before forking: bad settings fail here, not in every worker, and
    # the generated instance secret exists before the workers would race to create it.
    with create_app().app_context():
        _require_database()
        db.engine.dispose()  # no pooled connection may cross the fork

    settings = gunicorn_settings(host, port, workers, threads)
    # Without Redis no worker may run: each web process ticks the scheduler itself.
    settings["post_worker_init"] = _start_embedded_scheduler
    run_gunicorn(create_app, settings)


def _start_embedded_scheduler(worker: Any) -> None:
    """gunicorn's hook in a new web process: the embedded mode's scheduler thread."""
    from trellis.platform.runtime.jobs import embedded

    embedded.start(worker.wsgi)


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


# --- users -------------------------------------------------------------------------------


@main.group("user")
def user_group() -> None:
    """Users: create, list, set a password, deactivate, reactivate."""


@user_group.command("create")
@click.option("--email", required=True)
@click.option("--password", required=True, help="8 characters at least")
@click.option("--name", default="")
@click.option("--role", "roles", multiple=True, help="a role name (repeatable)")
@click.option("--partner", type=int, default=None, help="id of the user's partner record")
@click.option("--admin", is_flag=True, help="a platform administrator (bypasses roles)")
@with_app
def user_create(
    email: str, password: str, name: str, roles: tuple[str, ...], partner: int | None, admin: bool
) -> None:
    """Create a user with roles and, for partner staff, their partner record."""
    _require_database()
    data: dict[str, Any] = {"email": email, "password": password, "roles": list(roles)}
    if name:
        data["name"] = name
    if partner is not None:
        data["partner"] = partner
    if admin:
        data["is_admin"] = True
    try:
        with db.session() as session:
            user = UserService(session, _registry(), None).create(data)
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


@user_group.command("list")
@with_app
def user_list() -> None:
    """List the users: roles, partner, and whether they are active, admins or locked out."""
    _require_database()
    with db.session() as session:
        users = list(session.scalars(sa.select(User).order_by(User.id)))
        roles: dict[int, list[str]] = {}
        for user_id, role in session.execute(
            sa.select(UserRole.user_id, UserRole.role_name).order_by(UserRole.role_name)
        ):
            roles.setdefault(user_id, []).append(role)
    headers = ["id", "email", "name", "roles", "partner", "active", "admin", "locked"]
    now = utcnow()
    _echo_table(headers, (_user_row(user, roles.get(user.id, []), now) for user in users))


def _user_row(user: User, roles: list[str], now: dt.datetime) -> list[str]:
    locked = bool(user.locked_until and as_utc(user.locked_until) > now)
    return [
        str(user.id),
        user.email,
        user.name,
        ",".join(roles),
        "" if user.partner_id is None else str(user.partner_id),
        "yes" if user.is_active else "no",
        "yes" if user.is_admin else "no",
        f"until {_moment(user.locked_until)} UTC" if locked else "no",
    ]


def _update_user(
    email: str, change: dict[str, Any], action: str, *, unchanged: Callable[[User], bool]
) -> bool:
    """Apply ``change`` and audit it as ``action``; False (nothing written) when the user
    is already as asked."""
    _require_database()
    try:
        with db.session() as session:
            user = _find_user(session, email)
            if unchanged(user):
                return False
            UserService(session, _registry(), None).update(user.id, change)
            audit.record(session, action, target=f"user/{user.id}", detail={"via": "cli"})
            session.commit()
    except TrellisError as exc:
        _fail(exc)
    return True


@user_group.command("set-password")
@click.option("--email", required=True)
@click.option("--password", required=True)
@with_app
def user_set_password(email: str, password: str) -> None:
    """Set a user's password (it also clears a sign-in lock)."""
    _update_user(email, {"password": password}, "user.password_set", unchanged=lambda _: False)
    click.echo(f"password of {email} set")


@user_group.command("deactivate")
@click.option("--email", required=True)
@with_app
def user_deactivate(email: str) -> None:
    """Deactivate a user: their sign-ins and API tokens stop working at once."""
    if _update_user(
        email, {"is_active": False}, "user.deactivated", unchanged=lambda u: not u.is_active
    ):
        click.echo(f"user {email} deactivated")
    else:
        click.echo(f"user {email} is already inactive")


@user_group.command("reactivate")
@click.option("--email", required=True)
@with_app
def user_reactivate(email: str) -> None:
    """Reactivate a user: they may sign in again; their old API tokens stay revoked."""
    if _update_user(
        email, {"is_active": True}, "user.reactivated", unchanged=lambda u: u.is_active
    ):
        click.echo(f"user {email} reactivated (their old API tokens stay revoked)")
    else:
        click.echo(f"user {email} is already active")


# --- demo --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoSignIn:
    """A demo sign-in to print; ``password`` is None when it is no longer known."""

    email: str
    label: str
    password: str | None


def _credentials_path() -> Path:
    return Path(current_app.instance_path) / DEMO_CREDENTIALS_FILE


def _read_credentials(path: Path) -> dict[str, Any]:
    """What an earlier ``trellis demo`` stored; empty when nothing (readable) is there."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        click.echo(f"warning: ignoring {path.name}: {exc}", err=True)
        return {}
    return data if isinstance(data, dict) else {}


def _write_credentials(path: Path, data: dict[str, Any]) -> None:
    """Replace the file atomically; mode 0600, as it holds passwords and a token."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a left-over temporary file keeps its old mode otherwise
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False)
    os.replace(temporary, path)


def _demo_admin(session: Any, given: str | None, reset: bool) -> dict[str, str]:
    """Create the demo admin, or set their password when one is given or a reset is asked
    for; otherwise leave them as they are. Returns the password set, if any."""
    user = session.scalar(sa.select(User).where(User.email == DEMO_ADMIN_EMAIL))
    if user is not None and given is None and not reset:
        return {}
    if (
        user is not None
        and given is not None
        and check_password_hash(user.password_hash or "", given)
    ):
        return {DEMO_ADMIN_EMAIL: given}  # already so: setting it again would end their sessions
    password = given or secrets.token_urlsafe(9)
    admin, created = UserService(session, _registry(), None).ensure_admin(
        DEMO_ADMIN_EMAIL, password
    )
    _audit_admin(session, admin, created)
    return {DEMO_ADMIN_EMAIL: password}


def _demo_entries() -> list[tuple[str, str]]:
    """(e-mail, label) of the demo admin and of each demo user of the channel pack."""
    entries = [(DEMO_ADMIN_EMAIL, "platform administrator")]
    for entry in demo_user_entries(resolve_pack("channel_pack")):
        entries.append((entry["email"].strip().lower(), ", ".join(entry.get("roles", []))))
    return entries


def _reset_demo_passwords(session: Any) -> dict[str, str]:
    """Give each demo user of the channel pack a fresh password (``--reset-passwords``).

    As any password change does, this ends their old sessions and clears a sign-in lock.
    """
    service = UserService(session, _registry(), None)
    made = {}
    for email, _ in _demo_entries()[1:]:
        user = session.scalar(sa.select(User).where(User.email == email))
        if user is None:
            continue
        made[email] = secrets.token_urlsafe(9)
        service.update(user.id, {"password": made[email]})
        detail = {"via": "cli", "command": "demo --reset-passwords"}
        audit.record(session, "user.password_set", target=f"user/{user.id}", detail=detail)
    return made


def _known_sign_ins(session: Any, passwords: dict[str, str]) -> list[DemoSignIn]:
    """Each demo user that exists, with their password when it still verifies."""
    entries = _demo_entries()
    hashes = dict(
        session.execute(
            sa.select(User.email, User.password_hash).where(
                User.email.in_([email for email, _ in entries])
            )
        ).all()
    )
    sign_ins = []
    for email, label in entries:
        if email not in hashes:
            continue
        password = passwords.get(email)
        valid = password is not None and check_password_hash(hashes[email] or "", password)
        sign_ins.append(DemoSignIn(email, label, password if valid else None))
    return sign_ins


def _demo_token(session: Any, stored: Any) -> str:
    """The token an earlier demo printed while it still works for the admin, else a new one."""
    if isinstance(stored, str):
        try:
            if authenticate_token(session, f"Bearer {stored}").email == DEMO_ADMIN_EMAIL:
                return stored
        except AuthenticationRequired:
            pass
    return _issue_token(session, DEMO_ADMIN_EMAIL, "demo")


def _prepare_demo(
    made_by_pack: dict[str, str], admin_password: str | None, reset: bool
) -> tuple[list[DemoSignIn], str]:
    """Keep the sign-ins an earlier demo made (or make new ones when asked); store them."""
    path = _credentials_path()
    stored = _read_credentials(path)
    kept = stored.get("passwords")
    passwords = {
        email: password
        for email, password in (kept.items() if isinstance(kept, dict) else ())
        if isinstance(email, str) and isinstance(password, str)
    }
    passwords.update(made_by_pack)
    with db.session() as session:
        passwords.update(_demo_admin(session, admin_password, reset))
        if reset:
            passwords.update(_reset_demo_passwords(session))
        sign_ins = _known_sign_ins(session, passwords)
        token = _demo_token(session, stored.get("token"))
        session.commit()
    # A password given in TRELLIS_ADMIN_PASSWORD is the user's own: it is not written down.
    generated = {
        s.email: s.password
        for s in sign_ins
        if s.password and not (admin_password and s.email == DEMO_ADMIN_EMAIL)
    }
    _write_credentials(path, {"passwords": generated, "token": token})
    return sign_ins, token


def _echo_demo(host: str, port: int, sign_ins: list[DemoSignIn], token: str) -> None:
    click.echo("")
    click.echo(f"Trellis demo on http://{host}:{port}")
    for index, sign_in in enumerate(sign_ins):
        lead = "  sign in:   " if index == 0 else " " * 13
        if sign_in.password is None:
            click.echo(f"{lead}{sign_in.email}   ({sign_in.label}): {UNKNOWN_PASSWORD}")
        else:
            click.echo(f"{lead}{sign_in.email} / {sign_in.password}   ({sign_in.label})")
    if any(sign_in.password is None for sign_in in sign_ins):
        click.echo("             (`trellis demo --reset-passwords` gives every one a new password)")
    click.echo(f"  API token: {token}")
    click.echo(
        f"  try:       curl -H 'Authorization: Bearer {token}' "
        f"http://{host}:{port}/api/v1/records/dealer"
    )
    click.echo("")


@main.command("demo")
@click.option("--port", default=5000, show_default=True, type=PORT)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--reset-passwords", is_flag=True, help="give the admin and every demo user a new password"
)
@with_app
def demo_command(port: int, host: str, reset_passwords: bool) -> None:
    """Set up the channel pack with demo data and serve it.

    A second run keeps the sign-ins the first one printed (they are kept, mode 0600, in
    the instance folder) and prints them again.
    """
    # Before anything changes: a demo already running on the port must keep its sign-ins.
    check_port_free(host, port)
    admin_password = os.environ.get("TRELLIS_ADMIN_PASSWORD") or None
    try:
        _init(None, None if admin_password is None else check_password(admin_password))
    except TrellisError as exc:  # e.g. a TRELLIS_ADMIN_PASSWORD that is too short
        _fail(exc)
    result = _install("channel_pack", demo=True)
    made = {user["email"]: user["password"] for user in result.demo_users}
    sign_ins, token = _prepare_demo(made, admin_password, reset_passwords)
    _echo_demo(host, port, sign_ins, token)
    db.engine.dispose()
    serve(host, port, workers=2, threads=4)

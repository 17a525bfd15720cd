"""Helpers shared by the benchmarks: databases, a Trellis app, definitions, output, and
the parts every hand-written baseline shares (token users, the app shell, JSON errors).

Nothing here is part of Trellis; the benchmarks only use Trellis's public entry
points (``create_app``, ``init_database``, ``issue_token`` and the REST API).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/x.py` from anywhere
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from flask import Flask, g, jsonify, request  # noqa: E402
from sqlalchemy import event  # noqa: E402
from sqlalchemy.exc import IntegrityError  # noqa: E402
from sqlalchemy.orm import (  # noqa: E402
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    sessionmaker,
)
from werkzeug.exceptions import HTTPException  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "TRELLIS_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BENCH_DB = os.environ.get("TRELLIS_BENCH_DB", "trellis_bench")
ADMIN_EMAIL = "bench@example.com"
ADMIN_PASSWORD = "bench password 123"
SCHEMA = "https://json-schema.org/draft/2020-12/schema"


class BenchError(SystemExit):
    """Abort the benchmark with a clear message and a non-zero exit status."""

    def __init__(self, message: str) -> None:
        super().__init__(f"bench: error: {message}")


def fresh_postgres(admin_url: str = PG_ADMIN_URL, name: str = BENCH_DB) -> str:
    """Drop and recreate database ``name``; return its URL. Exits non-zero when unreachable."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise BenchError(
            f"PostgreSQL is not reachable at {sa.make_url(admin_url).render_as_string()}: "
            f"{first} (set TRELLIS_BENCH_PG_URL or --pg-url)"
        ) from None
    finally:
        admin.dispose()
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_postgres(admin_url: str = PG_ADMIN_URL, name: str = BENCH_DB) -> None:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def database(kind: str, pg_url: str = PG_ADMIN_URL, keep: bool = False) -> Iterator[str]:
    """A fresh, empty database URL: a temporary SQLite file or ``trellis_bench`` on PostgreSQL.

    Both are removed afterwards unless ``keep`` (the SQLite file's folder is then left
    in the temporary directory; the PostgreSQL database stays until the next run).
    """
    if kind == "sqlite":
        folder = tempfile.mkdtemp(prefix="trellis-bench-")
        try:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"
        finally:
            if not keep:
                shutil.rmtree(folder, ignore_errors=True)
    elif kind == "postgresql":
        url = fresh_postgres(pg_url)
        try:
            yield url
        finally:
            if not keep:
                drop_postgres(pg_url)
    else:
        raise BenchError(f"unknown database kind {kind!r}")


def trellis_app(url: str, config: dict[str, Any] | None = None) -> tuple[Any, str]:
    """A Trellis app on ``url``, migrated, with an admin; returns (app, bearer token).

    ``config`` adds settings (e.g. ``RATE_LIMIT_STORAGE_URL``).

    The database URL and secret key are given, so the app writes nothing to its
    instance folder; it points at a temporary path so no ``./instance`` appears.
    """
    from trellis import create_app
    from trellis.extensions import database_of
    from trellis.platform.runtime.bootstrap import init_database
    from trellis.platform.runtime.identity.tokens import issue_token

    os.environ.setdefault(
        "TRELLIS_INSTANCE_PATH", str(Path(tempfile.gettempdir()) / "trellis-bench-instance")
    )
    app = create_app(
        {"DATABASE_URL": url, "SECRET_KEY": "bench-secret", "TESTING": False, **(config or {})}
    )
    database = database_of(app)
    with database.session() as session:
        init_database(database.engine, session, ADMIN_EMAIL, ADMIN_PASSWORD)
    with database.session() as session:
        token = issue_token(session, ADMIN_EMAIL, name="bench")
        session.commit()
    return app, token


def field(x_type: str, label: str, **keywords: Any) -> dict[str, Any]:
    return {"x-type": x_type, "x-label": {"en": label}, **keywords}


def definition(
    name: str, fields: dict[str, dict[str, Any]], required: list[str] | None = None
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "$schema": SCHEMA,
        "x-name": name,
        "x-label": {"en": name.replace("_", " ").title()},
        "type": "object",
        "properties": fields,
    }
    if required:
        doc["required"] = required
    return doc


def expect(response: Any, status: int, what: str) -> Any:
    if response.status_code != status:
        raise BenchError(
            f"{what}: expected HTTP {status}, got {response.status_code}: "
            f"{response.get_data(as_text=True)[:500]}"
        )
    return response.get_json()


def log(message: str = "") -> None:
    print(message, flush=True)


# =====================================================================================
# The hand-written baselines: what a competent Flask + SQLAlchemy 2 app has around its
# views — bearer tokens of active users, a session per request, JSON errors.
# =====================================================================================


class HandBase(DeclarativeBase):
    type_annotation_map = {dt.datetime: sa.DateTime(timezone=True)}  # noqa: RUF012


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with ``Z``, as Trellis writes moments (SQLite hands back naive ones)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


class HandUser(HandBase):
    __tablename__ = "hand_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    is_active: Mapped[bool] = mapped_column(default=True)


class HandToken(HandBase):
    __tablename__ = "hand_api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("hand_users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


class ApiError(Exception):
    """A refusal answered as ``{"error": {"code", "message", "details"}}``."""

    def __init__(self, status: int, code: str, message: str, details: list[Any] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or []


CENT = Decimal("0.01")


def amount(raw: Any, name: str, problems: list[dict[str, str]]) -> Decimal | None:
    """A money amount: a finite number ≥ 0, rounded to cents (None stays None)."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        problems.append({"field": name, "message": "must be a number"})
        return None
    try:
        value = Decimal(str(raw)).quantize(CENT, rounding=ROUND_HALF_UP)
    except InvalidOperation:
        problems.append({"field": name, "message": "must be a finite number"})
        return None
    if value < 0:
        problems.append({"field": name, "message": "must be 0 or more"})
    return value


def hand_engine(url: str) -> sa.Engine:
    """An engine set up like Trellis's (pre-ping on PostgreSQL; the same SQLite pragmas)."""
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "busy_timeout=30000", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def hand_app(name: str, engine: sa.Engine) -> Flask:
    """The baseline's shell: bearer token → ``g.session`` and ``g.user_id`` → view → JSON.

    Every error, its own or werkzeug's, is answered as JSON; a unique index that refuses
    a row in a race is a 409. The session is closed (rolled back) after every request.
    """
    app = Flask(name)
    make_session = sessionmaker(engine, expire_on_commit=False)

    def error(status: int, code: str, message: str, details: list[Any] | None = None) -> Any:
        body = {"error": {"code": code, "message": message, "details": details or []}}
        return jsonify(body), status

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Any:
        return error(exc.status, exc.code, exc.message, exc.details)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        code = (exc.name or "error").lower().replace(" ", "_")
        return error(exc.code or 500, code, exc.description or code)

    @app.errorhandler(IntegrityError)
    def conflict(_exc: IntegrityError) -> Any:
        return error(409, "conflict", "the change conflicts with another; retry")

    @app.before_request
    def authenticate() -> None:
        g.session = make_session()
        g.user_id = user_of_token(g.session, request.headers.get("Authorization", ""))

    @app.teardown_request
    def close_session(_exc: BaseException | None) -> None:
        session: Session | None = g.pop("session", None)
        if session is not None:
            session.close()

    return app


def user_of_token(session: Session, header: str) -> int:
    """The id of the active user whose live token the ``Authorization`` header carries."""
    if not header.startswith("Bearer "):
        raise ApiError(401, "authentication_required", "send Authorization: Bearer <token>")
    token = header[7:].strip()
    if not token or len(token) > 200:
        raise ApiError(401, "authentication_required", "the token is not valid")
    row = session.execute(
        sa.select(HandToken.user_id, HandToken.expires_at, HandToken.revoked_at, HandUser.is_active)
        .join(HandUser, HandUser.id == HandToken.user_id)
        .where(HandToken.token_hash == hashlib.sha256(token.encode()).hexdigest())
    ).first()
    if row is None:
        raise ApiError(401, "authentication_required", "the token is not valid")
    user_id, expires_at, revoked_at, is_active = row
    if expires_at is not None and expires_at.tzinfo is None:  # SQLite's moments are naive
        expires_at = expires_at.replace(tzinfo=dt.UTC)
    expired = expires_at is not None and expires_at <= utcnow()
    if revoked_at is not None or not is_active or expired:
        raise ApiError(401, "authentication_required", "the token is revoked or expired")
    return int(user_id)


def add_hand_user(session: Session, email: str = "bench@example.com") -> str:
    """A baseline user with a bearer token (committed by the caller); returns the token."""
    token = "hand_" + secrets.token_urlsafe(32)
    user = HandUser(email=email)
    session.add(user)
    session.flush()
    session.add(HandToken(user_id=user.id, token_hash=hashlib.sha256(token.encode()).hexdigest()))
    return token

"""Helpers shared by the benchmarks: databases, a Trellis app, definitions, output.

Nothing here is part of Trellis; the benchmarks only use Trellis's public entry
points (``create_app``, ``init_database``, ``issue_token`` and the REST API).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/x.py` from anywhere
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

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


def trellis_app(url: str) -> tuple[Any, str]:
    """A Trellis app on ``url``, migrated, with an admin; returns (app, bearer token).

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
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench-secret", "TESTING": False})
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

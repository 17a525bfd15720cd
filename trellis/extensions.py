"""Shared integrations: the database, one per app (``Database.init_app``), and ``db``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from flask import Flask


class Database:
    """One engine and session factory, owned by one app (``app.extensions["trellis.db"]``).

    SQLite is set up so that concurrent requests queue instead of failing: WAL
    journal, a busy timeout, foreign keys on, and transactions begun by us (the
    pysqlite driver would otherwise run DDL outside them). A connection opened with
    the execution option ``trellis_write`` begins ``IMMEDIATE``, taking the write lock
    up front, so two writers wait for each other instead of one failing mid-way.
    """

    def __init__(self, url: str, echo: bool = False) -> None:
        self.engine = create_engine(url, echo=echo)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def init_app(cls, app: Flask) -> Database:
        """Give ``app`` a database of its own, from its ``DATABASE_URL``."""
        database = cls(app.config["DATABASE_URL"], echo=app.config["SQL_ECHO"])
        # Each session knows its app, so work queued to run after its commit (jobs, the
        # outbox) finds the app's settings even where no app context is pushed.
        database.sessionmaker.configure(info={"trellis.app": app})
        app.extensions["trellis.db"] = database
        return database

    @property
    def dialect(self) -> str:
        """The engine's dialect name: ``postgresql`` or ``sqlite``."""
        return self.engine.dialect.name

    def session(self) -> Session:
        """A new ORM session on this database; the caller commits and closes it."""
        return self.sessionmaker()

    def write_session(self) -> Session:
        """A session whose transactions take SQLite's write lock when they begin (lazily, at
        the first statement), for work outside a request that will write (jobs, the relay).
        """
        return self.sessionmaker(bind=self.engine.execution_options(trellis_write=True))


def database_of(app: Flask) -> Database:
    """The ``Database`` that ``app`` owns (for code that runs outside its app context)."""
    database: Database = app.extensions["trellis.db"]
    return database


class CurrentDatabase:
    """The current app's ``Database``, looked up on each use (as Flask-SQLAlchemy's ``db``).

    Each app owns its engine, so two apps in one process never share one; outside an
    app context use ``database_of(app)`` (or push ``app.app_context()``).
    """

    @property
    def engine(self) -> sa.Engine:
        """The current app's engine; raises outside an app context."""
        return database_of(current_app).engine

    @property
    def dialect(self) -> str:
        """The current app's dialect name (``postgresql`` or ``sqlite``)."""
        return database_of(current_app).dialect

    def session(self) -> Session:
        """A new session on the current app's database; the caller closes it."""
        return database_of(current_app).session()


def create_engine(url: str, echo: bool = False) -> sa.Engine:
    """An engine for ``url``: SQLite waits 30 s on a lock and is set up as ``Database``
    says; any other database checks pooled connections before use (pre-ping).
    """
    kwargs: dict[str, Any] = {"echo": echo}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    engine = sa.create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        immediate = connection.get_execution_options().get("trellis_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


db = CurrentDatabase()

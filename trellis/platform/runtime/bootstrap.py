"""Creating or upgrading a database: Alembic migrations, object constraints, the first admin."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from trellis.platform.metadata.definition import load_definition
from trellis.platform.runtime.identity.users import UserService
from trellis.platform.runtime.models import MetaRevision
from trellis.platform.runtime.storage import MissingConstraint, add_missing_constraints
from trellis.platform.runtime.versioning import OBJECTS, current_documents

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.metadata.definition import ObjectDefinition


def alembic_config() -> Config:
    """An Alembic config that finds the packaged migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", "trellis:migrations")
    return config


def upgrade_database(engine: sa.Engine) -> None:
    """Run every pending platform migration (idempotent)."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def upgrade_object_constraints(engine: sa.Engine) -> list[MissingConstraint]:
    """Give object tables made before foreign keys existed the ones their definitions imply.

    One transaction: on a refusal (orphaned or missing references, named by record id)
    nothing changes. SQLite rebuilds tables to add constraints, which is safe only with
    foreign keys off — and that can be switched only outside a transaction, on this
    connection, which is why this step has its own.
    """
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            _sqlite_foreign_keys(connection, on=False)
        try:
            with connection.begin():
                return add_missing_constraints(connection, _current_definitions(connection))
        finally:
            if sqlite:
                _sqlite_foreign_keys(connection, on=True)


def _sqlite_foreign_keys(connection: sa.Connection, on: bool) -> None:
    # Straight to the driver: a statement through SQLAlchemy would first begin a transaction.
    raw = connection.connection.driver_connection
    assert raw is not None
    raw.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def _current_definitions(connection: sa.Connection) -> list[ObjectDefinition]:
    return [load_definition(doc) for _, _, doc in current_documents(connection, OBJECTS)]


def ensure_revision_row(session: Session) -> None:
    """Create the single metadata-revision counter (at 0) if the database lacks it."""
    if session.get(MetaRevision, 1) is None:
        session.add(MetaRevision(id=1, revision=0))
        session.flush()


def init_database(
    engine: sa.Engine,
    session: Session,
    admin_email: str | None,
    admin_password: str | None,
    report: Callable[[str], None] | None = None,
) -> bool:
    """Migrate, add missing object constraints, then create or update the admin.

    Returns whether the admin was created; ``report`` hears of each constraint added.
    """
    upgrade_database(engine)
    for added in upgrade_object_constraints(engine):
        if report is not None:
            report(f"added {added.describe()}")
    ensure_revision_row(session)
    created = False
    if admin_email and admin_password:
        from trellis.platform.runtime.registry import MetaRegistry

        users = UserService(session, MetaRegistry(), actor_id=None)
        _, created = users.ensure_admin(admin_email, admin_password)
    session.commit()
    return created

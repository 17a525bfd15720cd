"""Creating or upgrading a database: Alembic migrations and the first admin."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from trellis.platform.runtime.identity.users import UserService
from trellis.platform.runtime.models import MetaRevision

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "trellis:migrations")
    return config


def upgrade_database(engine: sa.Engine) -> None:
    """Run every pending platform migration (idempotent)."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def ensure_revision_row(session: Session) -> None:
    if session.get(MetaRevision, 1) is None:
        session.add(MetaRevision(id=1, revision=0))
        session.flush()


def init_database(
    engine: sa.Engine, session: Session, admin_email: str | None, admin_password: str | None
) -> bool:
    """Migrate, then create or update the admin. Returns whether the admin was created."""
    upgrade_database(engine)
    ensure_revision_row(session)
    created = False
    if admin_email and admin_password:
        from trellis.platform.runtime.registry import MetaRegistry

        users = UserService(session, MetaRegistry(), actor_id=None)
        _, created = users.ensure_admin(admin_email, admin_password)
    session.commit()
    return created

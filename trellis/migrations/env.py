"""Alembic environment for the platform tables.

Run through ``trellis init`` (``trellis.platform.runtime.bootstrap.upgrade_database``),
which hands over an open connection. Object tables (``obj_*``) are managed from
metadata at run time and are invisible to autogenerate.
"""

from __future__ import annotations

from typing import Any

from alembic import context

from trellis.platform.runtime.models import Base


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    return not (type_ == "table" and name is not None and name.startswith("obj_"))


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through `trellis init`, which supplies a connection")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_object=include_object,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()

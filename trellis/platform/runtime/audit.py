"""The audit trail: who did what, when, from where.

``record`` writes in the caller's transaction, so an audited change and its audit
row commit or roll back together. Events about refusals (failed sign-ins,
permission denials) must survive the refused request's rollback, so they are
written with ``record_now`` in a transaction of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from trellis.platform.runtime.models import AuditEvent, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

events = cast("sa.Table", AuditEvent.__table__)
_INSERT = sa.insert(events)


def event(
    action: str,
    *,
    actor_id: int | None = None,
    actor_email: str | None = None,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
) -> dict[str, Any]:
    """One ``audit_events`` row, stamped now (text cut to what the columns hold)."""
    return {
        "at": utcnow(),
        "action": action,
        "actor_id": actor_id,
        "actor_email": actor_email,
        "target": target[:200] if target else None,
        "detail": detail or {},
        "ip": ip[:64] if ip else None,
        "user_agent": user_agent[:300] if user_agent else None,
    }


def record(session: Session, action: str, **kwargs: Any) -> None:
    """Write an event in the caller's transaction (keyword arguments as for ``event``)."""
    write(session, event(action, **kwargs))


def write(session: Session, row: dict[str, Any]) -> None:
    """Insert an ``event()`` row in the session's transaction (it rolls back with it)."""
    session.execute(_INSERT, row)


def record_now(engine: sa.Engine, action: str, **kwargs: Any) -> None:
    """Write an event in its own transaction (it outlives the caller's rollback)."""
    with engine.begin() as connection:
        connection.execute(_INSERT, event(action, **kwargs))


CTE_PREFIX = "audit_"


def insert_cte() -> sa.CTE:
    """An event's INSERT as a CTE, to ride on another statement (PostgreSQL runs both).

    Its parameters are the columns prefixed with ``CTE_PREFIX`` (see ``cte_parameters``),
    so they never meet the other statement's.
    """
    columns = [c.name for c in events.columns if c.name != "id"]
    values = {name: sa.bindparam(CTE_PREFIX + name, type_=events.c[name].type) for name in columns}
    return sa.insert(events).values(values).cte("audit_event")


def cte_parameters(row: dict[str, Any]) -> dict[str, Any]:
    """An ``event()`` row's values keyed as ``insert_cte()``'s bind parameters."""
    return {CTE_PREFIX + name: value for name, value in row.items()}


def list_events(
    session: Session,
    *,
    action: str | None = None,
    actor_id: int | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> Sequence[sa.RowMapping]:
    """Events newest first: those whose action starts with ``action``, by ``actor_id``,
    older than the event ``before_id``."""
    query = sa.select(events).order_by(events.c.id.desc()).limit(limit)
    if action:
        query = query.where(events.c.action.startswith(action, autoescape=True))
    if actor_id is not None:
        query = query.where(events.c.actor_id == actor_id)
    if before_id is not None:
        query = query.where(events.c.id < before_id)
    return session.execute(query).mappings().all()

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


def _values(
    action: str,
    actor_id: int | None,
    actor_email: str | None,
    target: str | None,
    detail: dict[str, Any] | None,
    ip: str | None,
    user_agent: str | None,
) -> dict[str, Any]:
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


def record(
    session: Session,
    action: str,
    *,
    actor_id: int | None = None,
    actor_email: str | None = None,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
) -> None:
    session.execute(_INSERT, _values(action, actor_id, actor_email, target, detail, ip, user_agent))


def record_now(engine: sa.Engine, action: str, **kwargs: Any) -> None:
    """Write an event in its own transaction (it outlives the caller's rollback)."""
    with engine.begin() as connection:
        connection.execute(
            sa.insert(events).values(
                _values(
                    action,
                    kwargs.get("actor_id"),
                    kwargs.get("actor_email"),
                    kwargs.get("target"),
                    kwargs.get("detail"),
                    kwargs.get("ip"),
                    kwargs.get("user_agent"),
                )
            )
        )


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

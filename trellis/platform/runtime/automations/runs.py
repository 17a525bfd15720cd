"""The run history of automations: when, which record, the outcome and the error."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from trellis.platform.runtime.models import AutomationRun, iso, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.metadata.automations import Automation

DONE, FAILED, STOPPED = "done", "failed", "stopped"
_INSERT = sa.insert(cast("sa.Table", AutomationRun.__table__))


def record(
    session: Session,
    automation: Automation,
    record_id: int | None,
    trigger: str,
    outcome: str,
    *,
    error: str | None = None,
    key: str | None = None,
) -> None:
    """Write one run in the session's transaction (one statement, built once: a write's
    automation pays its round trip and little else)."""
    session.execute(
        _INSERT,
        {
            "automation_name": automation.name,
            "automation_version": automation.version,
            "object_name": automation.object_name,
            "record_id": record_id,
            "trigger": trigger,
            "outcome": outcome,
            "error": error[:2000] if error else None,
            "run_key": key,
            "at": utcnow(),
        },
    )


def recent(session: Session, name: str, limit: int = 50) -> list[dict[str, Any]]:
    """An automation's latest runs, newest first, as the API and the page show them."""
    rows = session.scalars(
        sa.select(AutomationRun)
        .where(AutomationRun.automation_name == name)
        .order_by(AutomationRun.id.desc())
        .limit(limit)
    )
    return [
        {
            "id": row.id,
            "at": iso(row.at),
            "version": row.automation_version,
            "object": row.object_name,
            "record_id": row.record_id,
            "trigger": row.trigger,
            "outcome": row.outcome,
            "error": row.error,
        }
        for row in rows
    ]

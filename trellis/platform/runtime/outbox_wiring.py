"""Where webhooks and notification e-mails meet the jobs outbox (``runtime/jobs``).

Both write their events with ``emit`` in the caller's transaction (nothing is sent when
it rolls back, nothing is lost when it commits) and are delivered by the relay through
the deliverers ``register_deliverers`` names: ``webhook`` (sign and POST) and ``email``
(send through the configured SMTP server). This module is the only one of them that
imports the jobs package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def emit(session: Session, kind: str, payload: dict[str, Any], target: str | None = None) -> str:
    """An outbox event of ``kind`` in the caller's transaction; its stable event id."""
    from trellis.platform.runtime import jobs  # type: ignore[attr-defined]

    event_id: str = jobs.outbox.emit(session, kind=kind, payload=payload, target=target)
    return event_id


def register_deliverers() -> None:
    """Register the relay's deliverers of kinds ``webhook`` and ``email``."""
    from trellis.platform.runtime import jobs  # type: ignore[attr-defined]
    from trellis.platform.runtime.notifications.email import deliver_email_event
    from trellis.platform.runtime.webhooks.delivery import deliver_outbox_event

    jobs.outbox.deliverer("webhook")(deliver_outbox_event)
    jobs.outbox.deliverer("email")(deliver_email_event)

"""Where webhooks and notification e-mails meet the jobs outbox (``runtime/jobs``).

Both write their events with ``emit`` in the caller's transaction (nothing is sent when
it rolls back, nothing is lost when it commits) and are delivered by the relay through
the deliverers ``register_deliverers`` names: ``webhook`` (sign and POST, logged) and
``email`` (send through the configured SMTP server). This module is the only one of them
that imports the jobs package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trellis.exceptions import DeliveryFailed

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def emit(session: Session, kind: str, payload: dict[str, Any], target: str | None = None) -> str:
    """An outbox event of ``kind`` in the caller's transaction; its stable event id."""
    from trellis.platform.runtime import jobs  # type: ignore[attr-defined]

    event_id: str = jobs.outbox.emit(session, kind=kind, payload=payload, target=target)
    return event_id


def deliver_webhook_event(session: Session, event: Any) -> None:
    """The relay's deliverer of kind ``webhook``: the event's target is the webhook's id.

    A failed attempt is logged in ``session``; the relay is told so (its own
    ``DeliveryFailed``), commits the log row and retries the event with back-off.
    """
    from flask import current_app

    from trellis.platform.runtime import jobs  # type: ignore[attr-defined]
    from trellis.platform.runtime.webhooks.delivery import deliver
    from trellis.platform.runtime.webhooks.service import WebhookSettings

    settings = WebhookSettings.of(current_app.config)
    try:
        deliver(session, event.event_id, int(event.target), event.payload, settings, event.attempt)
    except DeliveryFailed as exc:
        raise jobs.outbox.DeliveryFailed(exc.message) from exc


def deliver_email_event(_session: Session, event: Any) -> None:
    """The relay's deliverer of kind ``email``: nothing to log, so a failure rolls back."""
    from flask import current_app

    from trellis.platform.runtime.notifications.email import SmtpSettings, deliver_email

    deliver_email(event.payload, SmtpSettings.of(current_app.config))


def register_deliverers() -> None:
    """Register the relay's deliverers of kinds ``webhook`` and ``email``."""
    from trellis.platform.runtime import jobs  # type: ignore[attr-defined]

    jobs.outbox.deliverer("webhook")(deliver_webhook_event)
    jobs.outbox.deliverer("email")(deliver_email_event)

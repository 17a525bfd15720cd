"""Where webhooks and notification e-mails meet the jobs outbox (``runtime/jobs``).

Both write their events with ``emit`` in the caller's transaction (nothing is sent when
it rolls back, nothing is lost when it commits). The relay delivers them through the two
deliverers registered here when this module is imported (``webhooks`` and
``notifications`` import it, and the API imports both): ``webhook`` (sign and POST,
logged) and ``email`` (send through the configured SMTP server).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import current_app

from trellis.exceptions import DeliveryFailed
from trellis.platform.runtime.jobs import outbox

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def emit(session: Session, kind: str, payload: dict[str, Any], target: str | None = None) -> str:
    """An outbox event of ``kind`` in the caller's transaction; its stable event id."""
    return outbox.emit(session, kind=kind, payload=payload, target=target)


@outbox.deliverer("webhook")
def deliver_webhook_event(session: Session, event: outbox.OutboxEvent) -> None:
    """The relay's deliverer of kind ``webhook``: the event's target is the webhook's id.

    A failed attempt is logged in ``session``; the relay is told so (its own
    ``DeliveryFailed``), commits the log row and retries the event with back-off.
    """
    from trellis.platform.runtime.webhooks.delivery import deliver
    from trellis.platform.runtime.webhooks.service import WebhookSettings

    settings = WebhookSettings.of(current_app.config)
    try:
        deliver(
            session, event.event_id, int(event.target or 0), event.payload, settings, event.attempt
        )
    except DeliveryFailed as exc:
        raise outbox.DeliveryFailed(exc.message) from exc


@outbox.deliverer("email")
def deliver_email_event(_session: Session, event: outbox.OutboxEvent) -> None:
    """The relay's deliverer of kind ``email``: nothing to log, so a failure rolls back."""
    from trellis.platform.runtime.notifications.email import SmtpSettings, deliver_email

    deliver_email(event.payload, SmtpSettings.of(current_app.config))

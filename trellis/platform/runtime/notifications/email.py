"""Notification e-mails through the configured SMTP server (``TRELLIS_SMTP_*``).

The relay calls ``deliver_email`` (through ``outbox_wiring``) for each outbox event of kind
``email``; a server
that refuses or cannot be reached raises, so the relay retries it with back-off.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from trellis.exceptions import DeliveryFailed
from trellis.platform.messages import N_

SMTP_TIMEOUT = 30  # seconds


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how notification e-mails are sent."""

    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    starttls: bool = True

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> SmtpSettings | None:
        """The SMTP settings of an app's ``config``; None when no server is configured."""
        if not config.get("SMTP_HOST"):
            return None
        return cls(
            host=str(config["SMTP_HOST"]),
            port=int(config.get("SMTP_PORT") or 587),
            sender=str(config.get("SMTP_SENDER") or "trellis@localhost"),
            username=config.get("SMTP_USERNAME") or None,
            password=config.get("SMTP_PASSWORD") or None,
            starttls=bool(config.get("SMTP_STARTTLS", True)),
        )


def send_email(settings: SmtpSettings, to: str, subject: str, text: str) -> None:
    """Send one plain-text e-mail; ``DeliveryFailed`` when the server does not take it."""
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = to
    message["Subject"] = subject
    message.set_content(text)
    try:
        with smtplib.SMTP(settings.host, settings.port, timeout=SMTP_TIMEOUT) as smtp:
            if settings.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.username:
                smtp.login(settings.username, settings.password or "")
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(
            N_("the e-mail to %(to)s was not sent: %(reason)s", to=to, reason=str(exc))
        ) from exc


def deliver_email(payload: Mapping[str, Any], settings: SmtpSettings | None) -> None:
    """Send the e-mail an ``email`` outbox event holds (``to``, ``subject``, ``text``)."""
    if settings is None:
        raise DeliveryFailed(N_("no SMTP server is configured (TRELLIS_SMTP_HOST)"))
    send_email(settings, str(payload["to"]), str(payload["subject"]), str(payload["text"]))

"""In-app notifications: written by ``notify`` (automations, approvals), read by their user.

``notify`` writes one row per user in the caller's transaction and, for each user who
chose e-mail notifications, an outbox event of kind ``email`` (sent by the relay through
the configured SMTP server, retried until it is taken), so neither is lost nor sent for a
change that rolled back. Texts are kept per language (``{"en": …, "zh-CN": …}``) and each
user reads them, and gets their e-mail, in their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from trellis.exceptions import NotFound, ValidationFailed
from trellis.platform.messages import N_
from trellis.platform.runtime import outbox_wiring
from trellis.platform.runtime.models import Notification, User, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

Texts = str | Mapping[str, str]
LANGUAGES = ("en", "zh-CN")
MAX_TITLE = 200
MAX_BODY = 4000
PAGE_SIZE = 50


def texts_of(text: Texts | None, limit: int) -> dict[str, str]:
    """``text`` (plain, or per language) as ``{language: text}`` with English present."""
    if text is None:
        return {"en": ""}
    if isinstance(text, str):
        return {"en": text[:limit]}
    texts = {lang: str(text[lang])[:limit] for lang in LANGUAGES if text.get(lang)}
    if not texts:
        raise ValidationFailed(
            N_("a notification's text needs an en or zh-CN entry"),
            [{"field": "title", "message": N_("needs an en or zh-CN entry")}],
        )
    texts.setdefault("en", next(iter(texts.values())))
    return texts


def in_language(texts: Mapping[str, str], language: str) -> str:
    """The text in ``language``, else English."""
    return texts.get(language) or texts.get("en") or ""


def notify(
    session: Session,
    user_ids: Iterable[int],
    title: Texts,
    body: Texts | None = None,
    link: tuple[str, int] | None = None,
    *,
    email: bool = True,
) -> list[Notification]:
    """Notify each active user of ``user_ids``: ``title`` and ``body`` as plain text or
    ``{"en": …, "zh-CN": …}``, ``link`` the ``(object name, record id)`` it is about.

    Written in the caller's transaction; users who chose it also get an e-mail (through
    the outbox) when ``email`` is true and an SMTP server is configured. Inactive or
    unknown users are skipped. The rows written, in ``user_ids``' order.
    """
    wanted = list(dict.fromkeys(int(user_id) for user_id in user_ids))
    if not wanted:
        return []
    titles, bodies = texts_of(title, MAX_TITLE), texts_of(body, MAX_BODY)
    users = {
        user.id: user
        for user in session.scalars(
            sa.select(User).where(User.id.in_(wanted), User.is_active.is_(True))
        )
    }
    rows = [
        Notification(
            user_id=user_id,
            title=titles,
            body=bodies,
            object_name=link[0] if link else None,
            record_id=int(link[1]) if link else None,
        )
        for user_id in wanted
        if user_id in users
    ]
    session.add_all(rows)
    session.flush()
    if email and smtp_configured():
        for row in rows:
            user = users[row.user_id]
            if user.email_notifications:
                outbox_wiring.emit(session, "email", email_payload(user, row), target=user.email)
    return rows


def smtp_configured() -> bool:
    """Whether the app has an SMTP server for notification e-mails (``TRELLIS_SMTP_HOST``)."""
    from flask import current_app, has_app_context

    return has_app_context() and bool(current_app.config.get("SMTP_HOST"))


def email_payload(user: User, row: Notification) -> dict[str, Any]:
    """The e-mail of one notification, in its user's language, with the record's address
    when the app knows its public one (``TRELLIS_BASE_URL``)."""
    from flask import current_app

    language = user.language if user.language in LANGUAGES else "en"
    text = in_language(row.body, language)
    base = current_app.config.get("BASE_URL")
    if base and row.object_name and row.record_id is not None:
        # The record page's path from the app's own routes (no request context needed).
        path = current_app.url_map.bind("").build(
            "ui.record_detail", {"object_name": row.object_name, "record_id": row.record_id}
        )
        text = f"{text}\n\n{base}{path}".lstrip()
    return {
        "to": user.email,
        "subject": in_language(row.title, language),
        "text": text,
        "notification_id": row.id,
    }


class NotificationService:
    """One user's notifications: list, unread count, mark read, the e-mail preference."""

    def __init__(self, session: Session, user_id: int) -> None:
        self.session = session
        self.user_id = user_id

    def page(
        self, *, unread_only: bool = False, before: int | None = None, limit: int = PAGE_SIZE
    ) -> list[Notification]:
        """The user's notifications, newest first, ``limit`` at a time before an id."""
        statement = (
            sa.select(Notification)
            .where(Notification.user_id == self.user_id)
            .order_by(Notification.id.desc())
            .limit(limit)
        )
        if unread_only:
            statement = statement.where(Notification.read_at.is_(None))
        if before is not None:
            statement = statement.where(Notification.id < before)
        return list(self.session.scalars(statement))

    def unread_count(self) -> int:
        """How many of the user's notifications are unread (one indexed count)."""
        return int(
            self.session.scalar(
                sa.select(sa.func.count())
                .select_from(Notification)
                .where(Notification.user_id == self.user_id, Notification.read_at.is_(None))
            )
            or 0
        )

    def mark_read(self, notification_id: int) -> Notification:
        """Mark one of the user's notifications read (again: no change); another's is 404."""
        row = self.session.get(Notification, notification_id)
        if row is None or row.user_id != self.user_id:
            raise NotFound(N_("no notification %(id)s", id=notification_id))
        self.session.execute(
            sa.update(Notification)
            .where(Notification.id == notification_id, Notification.read_at.is_(None))
            .values(read_at=utcnow())
        )
        self.session.refresh(row)
        return row

    def mark_all_read(self) -> int:
        """Mark every unread notification of the user read; how many were."""
        result = self.session.execute(
            sa.update(Notification)
            .where(Notification.user_id == self.user_id, Notification.read_at.is_(None))
            .values(read_at=utcnow())
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def email_enabled(self) -> bool:
        """Whether the user chose to get their notifications by e-mail too."""
        return bool(
            self.session.scalar(sa.select(User.email_notifications).where(User.id == self.user_id))
        )

    def set_email(self, enabled: bool) -> None:
        """Choose whether the user's notifications are also e-mailed to them."""
        self.session.execute(
            sa.update(User).where(User.id == self.user_id).values(email_notifications=enabled)
        )

"""The caller's own notifications: list, unread count, mark read (one or all), and their
choice of e-mail notifications. Every signed-in user has them; nobody sees another's."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify, request

from trellis.exceptions import BadRequest
from trellis.platform.runtime.api import bp, caller, commit, json_body
from trellis.platform.runtime.api.schemas import (
    NotificationPageSchema,
    NotificationPreferencesInputSchema,
    NotificationPreferencesSchema,
    NotificationQuerySchema,
    NotificationSchema,
    UnreadCountSchema,
    load,
)
from trellis.platform.runtime.models import Notification
from trellis.platform.runtime.notifications import NotificationService
from trellis.platform.runtime.notifications.service import smtp_configured

NOTIFICATION, PAGE, QUERY = (
    NotificationSchema(),
    NotificationPageSchema(),
    NotificationQuerySchema(),
)
UNREAD, PREFERENCES = UnreadCountSchema(), NotificationPreferencesSchema()
PREFERENCES_INPUT = NotificationPreferencesInputSchema()


def _service() -> NotificationService:
    return NotificationService(g.session, caller().user_id)


def notification_source(row: Notification) -> dict[str, Any]:
    """A notification as its shape dumps it (the link as ``{"object", "record_id"}``)."""
    link = None
    if row.object_name is not None and row.record_id is not None:
        link = {"object": row.object_name, "record_id": row.record_id}
    return {
        "id": row.id,
        "title": row.title,
        "body": row.body,
        "link": link,
        "created_at": row.created_at,
        "read_at": row.read_at,
    }


@bp.get("/notifications")
def list_notifications() -> Any:
    """``GET /notifications``: the caller's notifications newest first (``unread``,
    ``before``, ``limit``) and their unread count; 400 for a bad query parameter."""
    query = load(QUERY, request.args, what="query", refusal=BadRequest)
    service = _service()
    items = service.page(
        unread_only=bool(query.get("unread")), before=query.get("before"), limit=query["limit"]
    )
    return jsonify(
        PAGE.dump(
            {"items": [notification_source(r) for r in items], "unread": service.unread_count()}
        )
    )


@bp.get("/notifications/unread-count")
def unread_notifications() -> Any:
    """``GET /notifications/unread-count``: how many of the caller's are unread."""
    return jsonify(UNREAD.dump({"unread": _service().unread_count()}))


@bp.post("/notifications/<int:notification_id>/read")
def read_notification(notification_id: int) -> Any:
    """``POST /notifications/<id>/read``: mark one read; another user's is 404."""
    row = _service().mark_read(notification_id)
    body = NOTIFICATION.dump(notification_source(row))
    commit()
    return jsonify(body)


@bp.post("/notifications/read-all")
def read_all_notifications() -> Any:
    """``POST /notifications/read-all``: mark every unread one of the caller's read."""
    _service().mark_all_read()
    commit()
    return jsonify(UNREAD.dump({"unread": 0}))


@bp.get("/notifications/preferences")
def notification_preferences() -> Any:
    """``GET /notifications/preferences``: whether the caller also gets e-mails."""
    return jsonify(_preferences(_service()))


@bp.put("/notifications/preferences")
def set_notification_preferences() -> Any:
    """``PUT /notifications/preferences``: ``{"email": true|false}``; 422 otherwise."""
    data = load(PREFERENCES_INPUT, json_body(), what="preferences")
    service = _service()
    service.set_email(data["email"])
    body = _preferences(service)
    commit()
    return jsonify(body)


def _preferences(service: NotificationService) -> dict[str, Any]:
    return dict(
        PREFERENCES.dump({"email": service.email_enabled(), "email_available": smtp_configured()})
    )

"""The signed-in user's notifications: the bell's count in the top bar, the list (newest
first, unread marked, each linking to its record), mark read one or all, and the choice
of e-mail notifications. Served by ``NotificationService``, as ``/api/v1/notifications``."""

from __future__ import annotations

from typing import Any

from flask import flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext

from trellis.admin_ui import bp
from trellis.admin_ui.context import caller, commit, page_session, registry
from trellis.admin_ui.forms import record_href
from trellis.admin_ui.i18n import pick
from trellis.admin_ui.pages import signed_in
from trellis.platform.runtime.notifications import NotificationService
from trellis.platform.runtime.notifications.service import smtp_configured

PAGE_SIZE = 25


def _service() -> NotificationService:
    return NotificationService(page_session(), caller().user_id)


def unread_notifications() -> int:
    """The signed-in user's unread count, for the bell (one indexed count per page)."""
    if g.get("caller") is None or g.get("ui_session") is None:
        return 0
    count = g.get("unread_notifications")
    if count is None:
        count = g.unread_notifications = _service().unread_count()
    return int(count)


@bp.get("/notifications")
@signed_in
def notification_list() -> Any:
    """``/notifications``: the user's notifications, newest first, a page at a time."""
    before = request.args.get("before", "")
    service = _service()
    rows = service.page(before=int(before[:18]) if before.isdigit() else None, limit=PAGE_SIZE + 1)
    items = [_item(row) for row in rows[:PAGE_SIZE]]
    return render_template(
        "ui/notifications.html",
        items=items,
        next_before=rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None,
        unread=unread_notifications(),
        email=service.email_enabled(),
        email_available=smtp_configured(),
    )


def _item(row: Any) -> dict[str, Any]:
    href = None
    label = ""
    meta = registry().find(row.object_name) if row.object_name else None
    if meta is not None and row.record_id is not None:
        href = record_href(meta.name)(row.record_id)
        label = f"{pick(meta.definition.label, meta.name)} #{row.record_id}"
    return {
        "id": row.id,
        "title": pick(row.title),
        "body": pick(row.body) if any(row.body.values()) else "",
        "href": href,
        "record_label": label,
        "unread": row.read_at is None,
        "created_at": row.created_at,
    }


@bp.post("/notifications/<int:notification_id>/read")
@signed_in
def notification_read(notification_id: int) -> Any:
    """Mark one notification read (another user's: 404), then open its record if asked."""
    row = _service().mark_read(notification_id)
    commit()
    meta = registry().find(row.object_name) if row.object_name else None
    if request.form.get("open") == "1" and meta is not None and row.record_id is not None:
        return redirect(record_href(meta.name)(row.record_id))
    return redirect(url_for("ui.notification_list"))


@bp.post("/notifications/read-all")
@signed_in
def notification_read_all() -> Any:
    """Mark every unread notification of the user read."""
    count = _service().mark_all_read()
    commit()
    flash(
        ngettext("%(num)d notification marked read.", "%(num)d notifications marked read.", count),
        "info",
    )
    return redirect(url_for("ui.notification_list"))


@bp.post("/notifications/preferences")
@signed_in
def notification_preferences() -> Any:
    """Choose whether notifications are also sent by e-mail."""
    enabled = request.form.get("email") == "true"
    _service().set_email(enabled)
    commit()
    flash(
        _("Notifications will also be e-mailed to you.")
        if enabled
        else _("Notifications will not be e-mailed to you."),
        "info",
    )
    return redirect(url_for("ui.notification_list"))

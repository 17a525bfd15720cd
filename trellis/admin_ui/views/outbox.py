"""Setup → Failed events (administrators): outbox events given up on, or retrying after
a failure — kind and type, target, attempts, last error, when — with a Retry button for
the failed ones (a form with its CSRF token, audited as the API's retry is).

It sits beside Setup → Jobs: jobs are work to run, these are events to deliver
(webhooks, e-mails), and both are retried by an administrator the same way.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from trellis.admin_ui import bp
from trellis.admin_ui.context import audit_context, caller, commit, page_session
from trellis.admin_ui.pages import DESIGNERS, admin_only
from trellis.exceptions import NotRetryable
from trellis.platform.runtime import audit
from trellis.platform.runtime.jobs import outbox
from trellis.platform.runtime.models import OutboxEntry, Webhook

# Beside Jobs in the Setup menu.
DESIGNERS.insert(
    next((i + 1 for i, (endpoint, _l) in enumerate(DESIGNERS) if endpoint == "ui.job_list"), 0),
    ("ui.outbox_list", lambda: _("Failed events")),
)

EVENT_PAGE_SIZE = 50


def state_labels() -> dict[str, str]:
    """The two lists the page shows, as it names them."""
    return {"failed": _("Failed"), "retrying": _("Retrying")}


@bp.get("/setup/outbox")
@admin_only
def outbox_list() -> Any:
    """``/setup/outbox``: failed events (or, with ``?status=retrying``, those waiting to be
    tried again after a failure), newest first, a page at a time before the ``before`` id."""
    asked = request.args.get("status", "")
    state = asked if asked in outbox.LISTED else "failed"
    before = request.args.get("before", "")
    start = int(before[:18]) if before.isdigit() else None
    session = page_session()
    found = outbox.list_events(session, state=state, before_id=start, limit=EVENT_PAGE_SIZE + 1)
    page = found[:EVENT_PAGE_SIZE]
    return render_template(
        "ui/setup/outbox.html",
        events=page,
        state=state,
        states=state_labels(),
        webhooks=_webhook_names(session, page),
        next_before=page[-1].id if len(found) > EVENT_PAGE_SIZE else None,
    )


def _webhook_names(session: Any, events: list[OutboxEntry]) -> dict[str, str]:
    """``{target: name}`` of the webhooks the page's webhook events go to (one query)."""
    targets = [e.target or "" for e in events if e.kind == "webhook"]
    ids = {int(target[:18]) for target in targets if target.isdigit()}
    if not ids:
        return {}
    rows = session.execute(sa.select(Webhook.id, Webhook.name).where(Webhook.id.in_(ids)))
    return {str(row.id): row.name for row in rows}


@bp.post("/setup/outbox/<event_id>/retry")
@admin_only
def outbox_retry(event_id: str) -> Any:
    """``POST /setup/outbox/<event id>/retry``: a failed event due again (relayed after the
    commit); an event that has not failed is refused with a message."""
    session = page_session()
    try:
        entry = outbox.retry_event(session, event_id)
    except NotRetryable:
        flash(_("Only a failed event can be retried."), "error")
        return redirect(url_for("ui.outbox_list"))
    audit.record(
        session,
        "outbox.retried",
        actor_id=caller().user_id,
        target=f"outbox/{event_id}",
        detail={"kind": entry.kind},
        **audit_context(),
    )
    commit()
    session.refresh(entry)
    if entry.status == "delivered":
        flash(_("Event %(id)s was delivered.", id=event_id), "info")
    else:
        flash(_("Event %(id)s is due again.", id=event_id), "info")
    return redirect(url_for("ui.outbox_list"))

"""Setup pages of webhooks (administrators): the list, the form (new and edit), the secret
shown once after creating or rotating it, the delivery log, and a test event.

The pages call ``WebhookService`` with the same body checks as ``/api/v1/webhooks``. A
new secret is rendered into the answer of the POST that made it, never flashed: flashed
messages travel in the session cookie, which is signed but not encrypted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from trellis.admin_ui import bp
from trellis.admin_ui.context import (
    REFUSALS,
    audit_context,
    caller,
    commit,
    page_session,
    registry,
    rollback,
)
from trellis.admin_ui.i18n import pick, told
from trellis.admin_ui.pages import DESIGNERS, admin_only
from trellis.exceptions import TrellisError
from trellis.platform.runtime.api.schemas import WebhookCreateSchema, WebhookUpdateSchema, load
from trellis.platform.runtime.webhooks import (
    RECORD_EVENTS,
    WebhookService,
    WebhookSettings,
    send_test,
)

if TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict

    from trellis.platform.runtime.models import Webhook

DESIGNERS.append(("ui.webhook_list", lambda: _("Webhooks")))

CREATE, UPDATE = WebhookCreateSchema(), WebhookUpdateSchema()
FORM_FIELDS = frozenset({"name", "url", "events", "objects", "active"})
DELIVERIES_PAGE = 50


def _webhooks() -> WebhookService:
    return WebhookService(
        page_session(),
        registry(),
        WebhookSettings.of(current_app.config),
        caller().user_id,
        audit_context(),
    )


def event_labels() -> dict[str, str]:
    """The record events the form offers, in the user's language."""
    return {
        "record.created": _("A record is created"),
        "record.updated": _("A record is changed"),
        "record.deleted": _("A record is deleted"),
    }


@bp.get("/setup/webhooks")
@admin_only
def webhook_list() -> Any:
    """``/setup/webhooks``: every webhook with its target, events and state."""
    return render_template("ui/setup/webhooks.html", webhooks=_webhooks().all())


@bp.route("/setup/webhooks/new", methods=["GET", "POST"])
@admin_only
def webhook_new() -> Any:
    """``/setup/webhooks/new``: the form; POST creates the webhook and shows its secret
    this once. A refusal (bad URL, private target, no event) shows the form again (422)."""
    if request.method == "GET":
        values = {"events": ["record.created", "record.updated"], "objects": [], "active": True}
        return _form_page(None, values, {})
    data = webhook_input(request.form)
    service = _webhooks()
    try:
        webhook, secret = service.create(load(CREATE, data, what="webhook"))
    except TrellisError as exc:
        if exc.status not in REFUSALS:
            raise
        rollback()
        return _form_page(None, data, form_errors(exc), status=422)
    commit()
    return _secret_page(webhook, secret, created=True)


@bp.route("/setup/webhooks/<int:webhook_id>", methods=["GET", "POST"])
@admin_only
def webhook_edit(webhook_id: int) -> Any:
    """``/setup/webhooks/<id>``: a webhook's form; POST saves it. 422 with the problems."""
    service = _webhooks()
    webhook = service.get(webhook_id)  # NotFound → the app's 404 page
    if request.method == "GET":
        return _form_page(webhook, _values(webhook), {})
    data = webhook_input(request.form)
    try:
        service.update(webhook_id, load(UPDATE, data, what="change"))
    except TrellisError as exc:
        if exc.status not in REFUSALS:
            raise
        rollback()
        return _form_page(service.get(webhook_id), data, form_errors(exc), status=422)
    commit()
    flash(_("Saved."), "info")
    return redirect(url_for("ui.webhook_edit", webhook_id=webhook_id))


@bp.post("/setup/webhooks/<int:webhook_id>/rotate")
@admin_only
def webhook_rotate(webhook_id: int) -> Any:
    """A new secret for the webhook, shown this once; the old one stops signing now."""
    webhook, secret = _webhooks().rotate(webhook_id)
    commit()
    return _secret_page(webhook, secret, created=False)


@bp.post("/setup/webhooks/<int:webhook_id>/delete")
@admin_only
def webhook_delete(webhook_id: int) -> Any:
    """Delete the webhook and its delivery log."""
    service = _webhooks()
    name = service.get(webhook_id).name
    service.delete(webhook_id)
    commit()
    flash(_("Webhook %(name)s deleted.", name=name), "info")
    return redirect(url_for("ui.webhook_list"))


@bp.post("/setup/webhooks/<int:webhook_id>/test")
@admin_only
def webhook_test(webhook_id: int) -> Any:
    """Send the webhook a ``webhook.test`` event (through the outbox, like any other)."""
    webhook = _webhooks().get(webhook_id)
    send_test(page_session(), webhook)
    commit()
    flash(_("A test event is on its way; its delivery appears below."), "info")
    return redirect(url_for("ui.webhook_deliveries", webhook_id=webhook_id))


@bp.get("/setup/webhooks/<int:webhook_id>/deliveries")
@admin_only
def webhook_deliveries(webhook_id: int) -> Any:
    """``/setup/webhooks/<id>/deliveries``: every attempt, newest first: event, status,
    duration, error and the first bytes of the answer."""
    service = _webhooks()
    webhook = service.get(webhook_id)
    before = request.args.get("before", "")
    found = service.deliveries(
        webhook_id, int(before[:18]) if before.isdigit() else None, DELIVERIES_PAGE + 1
    )
    page = found[:DELIVERIES_PAGE]
    return render_template(
        "ui/setup/webhook_deliveries.html",
        webhook=webhook,
        deliveries=page,
        next_before=page[-1].id if len(found) > DELIVERIES_PAGE else None,
    )


def webhook_input(form: MultiDict[str, str]) -> dict[str, Any]:
    """The form as the API's body: the checked events and objects, plus any other event
    types typed (comma-separated)."""
    others = [item.strip() for item in form.get("other_events", "").split(",") if item.strip()]
    return {
        "name": form.get("name", "").strip(),
        "url": form.get("url", "").strip(),
        "events": [e for e in form.getlist("events") if e] + others,
        "objects": [o for o in form.getlist("objects") if o],
        "active": form.get("active") == "true",
    }


def form_errors(exc: TrellisError) -> dict[str, str]:
    """The service's problems by form field (``events[0]`` → ``events``); ``""``: others."""
    errors: dict[str, str] = {}
    for detail in exc.details:
        key = str(detail.get("field", "")).split("[", 1)[0]
        message = detail.get("message")
        errors.setdefault(key if key in FORM_FIELDS else "", told(message) if message else "")
    if not errors:
        errors[""] = told(exc.message)
    return errors


def _values(webhook: Webhook) -> dict[str, Any]:
    return {
        "name": webhook.name,
        "url": webhook.url,
        "events": list(webhook.events),
        "objects": list(webhook.objects),
        "active": webhook.active,
    }


def _form_page(
    webhook: Webhook | None, values: dict[str, Any], errors: dict[str, str], status: int = 200
) -> Any:
    objects = sorted(
        ((meta.name, pick(meta.definition.label, meta.name)) for meta in registry().all()),
        key=lambda pair: pair[1],
    )
    page = render_template(
        "ui/setup/webhook_form.html",
        webhook=webhook,
        values=values,
        errors=errors,
        events=event_labels(),
        other_events=", ".join(e for e in values.get("events", []) if e not in RECORD_EVENTS),
        objects=objects,
    )
    return page, status


def _secret_page(webhook: Webhook, secret: str, *, created: bool) -> Any:
    page = render_template(
        "ui/setup/webhook_secret.html", webhook=webhook, secret=secret, created=created
    )
    # Never kept by a cache: the secret is in this answer only.
    return page, 201 if created else 200, {"Cache-Control": "no-store"}

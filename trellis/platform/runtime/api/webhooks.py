"""Webhooks (administrators only): CRUD, the secret rotated, the delivery log, a test event.

A secret leaves the server twice at most: in the answer that created it and in the one
that rotated it. Every other answer carries only its hint.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, g, jsonify, request

from trellis.exceptions import BadRequest, Forbidden
from trellis.platform.runtime.api import audit_context, bp, caller, commit, json_body, registry
from trellis.platform.runtime.api.schemas import (
    NewWebhookSecretSchema,
    PageQuerySchema,
    TestEventSchema,
    WebhookCreateSchema,
    WebhookDeliveryPageSchema,
    WebhookPageSchema,
    WebhookSchema,
    WebhookUpdateSchema,
    load,
    row_source,
)
from trellis.platform.runtime.webhooks import WebhookService, WebhookSettings, send_test

WEBHOOK, WEBHOOKS, WITH_SECRET = WebhookSchema(), WebhookPageSchema(), NewWebhookSecretSchema()
CREATE, UPDATE = WebhookCreateSchema(), WebhookUpdateSchema()
PAGE_QUERY, DELIVERIES, TEST_EVENT = (
    PageQuerySchema(),
    WebhookDeliveryPageSchema(),
    TestEventSchema(),
)


def webhook_service() -> WebhookService:
    """The webhook service on the request's session, for an administrator only (else 403)."""
    if not caller().is_admin:
        raise Forbidden("only administrators may manage webhooks")
    return WebhookService(
        g.session,
        registry(),
        WebhookSettings.of(current_app.config),
        caller().user_id,
        audit_context(),
    )


@bp.get("/webhooks")
def list_webhooks() -> Any:
    """``GET /webhooks``: every webhook, by name, with its secret's hint only."""
    items = webhook_service().all()
    return jsonify(WEBHOOKS.dump({"items": [row_source(w) for w in items]}))


@bp.post("/webhooks")
def create_webhook() -> Any:
    """``POST /webhooks``: a new webhook (201) with its secret, shown this once; 422 for a
    bad field or a URL that is not http(s) or reaches a private network."""
    data = load(CREATE, json_body(), what="webhook")
    webhook, secret = webhook_service().create(data)
    body = WITH_SECRET.dump(row_source(webhook, secret=secret))
    commit()
    return jsonify(body), 201


@bp.get("/webhooks/<int:webhook_id>")
def get_webhook(webhook_id: int) -> Any:
    """``GET /webhooks/<id>``: one webhook (no secret); 404."""
    return jsonify(WEBHOOK.dump(row_source(webhook_service().get(webhook_id))))


@bp.patch("/webhooks/<int:webhook_id>")
def update_webhook(webhook_id: int) -> Any:
    """``PATCH /webhooks/<id>``: change name, url, events, objects or active; 404, 422."""
    data = load(UPDATE, json_body(), what="change")
    webhook = webhook_service().update(webhook_id, data)
    body = WEBHOOK.dump(row_source(webhook))
    commit()
    return jsonify(body)


@bp.delete("/webhooks/<int:webhook_id>")
def delete_webhook(webhook_id: int) -> Any:
    """``DELETE /webhooks/<id>``: the webhook and its delivery log (204); 404."""
    webhook_service().delete(webhook_id)
    commit()
    return "", 204


@bp.post("/webhooks/<int:webhook_id>/rotate")
def rotate_webhook_secret(webhook_id: int) -> Any:
    """``POST /webhooks/<id>/rotate``: a new secret, shown this once (the old one stops
    signing at once); 404."""
    webhook, secret = webhook_service().rotate(webhook_id)
    body = WITH_SECRET.dump(row_source(webhook, secret=secret))
    commit()
    return jsonify(body)


@bp.get("/webhooks/<int:webhook_id>/deliveries")
def list_webhook_deliveries(webhook_id: int) -> Any:
    """``GET /webhooks/<id>/deliveries``: its delivery attempts newest first (``before``,
    ``limit``): status, duration, error and the answer's first bytes; 404."""
    query = load(PAGE_QUERY, request.args, what="query", refusal=BadRequest)
    items = webhook_service().deliveries(webhook_id, query.get("before"), query["limit"])
    return jsonify(DELIVERIES.dump({"items": [row_source(d) for d in items]}))


@bp.post("/webhooks/<int:webhook_id>/test")
def test_webhook(webhook_id: int) -> Any:
    """``POST /webhooks/<id>/test``: a ``webhook.test`` event for it, through the outbox
    (202, its event id); the delivery log shows how it went. 404."""
    webhook = webhook_service().get(webhook_id)
    event_id = send_test(g.session, webhook)
    commit()
    return jsonify(TEST_EVENT.dump({"event_id": event_id})), 202

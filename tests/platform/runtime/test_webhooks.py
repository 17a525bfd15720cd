"""Webhooks: signed deliveries to a real receiver, retries, the log, SSRF, secrets.

The receiver (``webhook_receiver``) is a real HTTP server on a free port that verifies
each signature and takes each event id once. Loopback is allowed here the way a test
deployment allows it (``TRELLIS_WEBHOOK_ALLOWED_NETWORKS``); the SSRF tests take it away.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import Api
from tests.factories import dealer_definition
from tests.platform.runtime.webhook_receiver import Receiver, running_receiver
from trellis.exceptions import DeliveryFailed
from trellis.extensions import Database
from trellis.platform.runtime.identity.tokens import issue_token
from trellis.platform.runtime.models import Webhook
from trellis.platform.runtime.webhooks import WebhookSettings, event_payload, record_json
from trellis.platform.runtime.webhooks.delivery import deliver
from trellis.platform.runtime.webhooks.service import wants

LOOPBACK = "127.0.0.0/8,::1/128"


@pytest.fixture
def app(app: Flask) -> Flask:
    app.config["WEBHOOK_ALLOWED_NETWORKS"] = LOOPBACK
    app.config["WEBHOOK_TIMEOUT"] = 0.5
    return app


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as found:
        yield found


def create_webhook(api: Api, receiver: Receiver, **extra: Any) -> dict[str, Any]:
    body = {"name": "ERP", "url": receiver.url, "events": ["record.created"], **extra}
    answer = api.post("/webhooks", body)
    assert answer.status_code == 201, answer.get_json()
    created: dict[str, Any] = answer.get_json()
    receiver.secret = created["secret"]
    return created


def send(app: Flask, database: Database, webhook_id: int, event_id: str, **payload: Any) -> Any:
    body = event_payload("record.created", "dealer", {"id": 1, "name": "Acme"}) | payload
    with database.session() as session:
        try:
            return deliver(session, event_id, webhook_id, body, WebhookSettings.of(app.config))
        finally:
            session.commit()  # as the relay does, a failure's log row included


def test_a_delivery_is_signed_received_and_logged(
    app: Flask, api: Api, database: Database, receiver: Receiver
) -> None:
    assert api.post("/objects", dealer_definition()).status_code == 201
    dealer = api.post("/records/dealer", {"name": "Acme", "credit_limit": 10}).get_json()
    webhook = create_webhook(api, receiver, objects=["dealer"])
    with database.session() as session:
        record = record_json(session, app.extensions["trellis.registry"], "dealer", dealer["id"])
    assert record == api.get(f"/records/dealer/{dealer['id']}").get_json()

    send(app, database, webhook["id"], "evt-1", record=record)

    assert receiver.bad_signatures == 0
    [event] = receiver.taken
    assert set(event) == {"id", "type", "object", "record", "occurred_at"}
    assert event["id"] == "evt-1" and event["type"] == "record.created"
    assert event["object"] == "dealer" and event["record"] == record
    assert receiver.headers[0]["Trellis-Event-Id"] == "evt-1"
    [logged] = api.get(f"/webhooks/{webhook['id']}/deliveries").get_json()["items"]
    assert logged["ok"] is True and logged["status_code"] == 200
    assert logged["event_id"] == "evt-1" and logged["event_type"] == "record.created"
    assert logged["duration_ms"] >= 0 and logged["error"] is None
    assert '"received": true' in logged["response_excerpt"]


def test_a_500_fails_the_attempt_and_a_repeat_is_deduplicated(
    app: Flask, api: Api, database: Database, receiver: Receiver
) -> None:
    webhook = create_webhook(api, receiver)
    receiver.script = [500]
    with pytest.raises(DeliveryFailed, match="HTTP 500"):
        send(app, database, webhook["id"], "evt-2")
    assert receiver.taken == []
    send(app, database, webhook["id"], "evt-2")  # the relay's retry
    send(app, database, webhook["id"], "evt-2")  # at least once: a repeat
    assert [event["id"] for event in receiver.taken] == ["evt-2"]
    assert receiver.repeats == ["evt-2"]
    items = api.get(f"/webhooks/{webhook['id']}/deliveries").get_json()["items"]
    assert [(i["ok"], i["status_code"]) for i in items] == [(True, 200), (True, 200), (False, 500)]
    assert '"status": 500' in items[-1]["response_excerpt"]
    limited = api.get(f"/webhooks/{webhook['id']}/deliveries?limit=1&before={items[0]['id']}")
    assert [i["id"] for i in limited.get_json()["items"]] == [items[1]["id"]]


def test_a_timeout_fails_the_attempt_and_is_logged(
    app: Flask, api: Api, database: Database, receiver: Receiver
) -> None:
    webhook = create_webhook(api, receiver)
    receiver.script = [("sleep", 2)]
    with pytest.raises(DeliveryFailed, match=r"no answer within 0\.5 s"):
        send(app, database, webhook["id"], "evt-3")
    send(app, database, webhook["id"], "evt-3")
    items = api.get(f"/webhooks/{webhook['id']}/deliveries").get_json()["items"]
    assert [(i["ok"], i["status_code"]) for i in items] == [(True, 200), (False, None)]
    assert items[1]["error"] == "no answer within 0.5 s"


def test_an_inactive_or_deleted_webhook_gets_nothing(
    app: Flask, api: Api, database: Database, receiver: Receiver
) -> None:
    webhook = create_webhook(api, receiver)
    assert api.patch(f"/webhooks/{webhook['id']}", {"active": False}).status_code == 200
    assert send(app, database, webhook["id"], "evt-4") is None
    assert api.delete(f"/webhooks/{webhook['id']}").status_code == 204
    assert send(app, database, webhook["id"], "evt-4") is None
    assert receiver.requests == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_private_targets_are_refused_outside_tests(app: Flask, api: Api, url: str) -> None:
    app.config["WEBHOOK_ALLOWED_NETWORKS"] = ""
    answer = api.post("/webhooks", {"name": "x", "url": url, "events": ["record.created"]})
    assert answer.status_code == 422, answer.get_json()
    error = answer.get_json()["error"]
    assert error["code"] == "target_refused"
    assert error["details"][0]["field"] == "url"
    assert "private or local address" in error["details"][0]["message"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "only http:// and https://"),
        ("file:///etc/passwd", "only http:// and https://"),
        ("http://user:pw@example.com/", "user name or password"),
        ("http://name.invalid/", "cannot be resolved"),
        ("http://[::1/", "not a valid URL"),
    ],
)
def test_only_http_targets_are_taken(api: Api, url: str, message: str) -> None:
    answer = api.post("/webhooks", {"name": "x", "url": url, "events": ["record.created"]})
    assert answer.status_code == 422
    assert message in answer.get_json()["error"]["details"][0]["message"]


def test_a_target_is_checked_again_at_delivery(
    app: Flask, api: Api, database: Database, receiver: Receiver
) -> None:
    webhook = create_webhook(api, receiver)
    app.config["WEBHOOK_ALLOWED_NETWORKS"] = ""  # as if the name now resolved privately
    with pytest.raises(DeliveryFailed, match="private or local address"):
        send(app, database, webhook["id"], "evt-5")
    assert receiver.requests == 0
    [logged] = api.get(f"/webhooks/{webhook['id']}/deliveries").get_json()["items"]
    assert logged["ok"] is False and "127.0.0.1" in logged["error"]


def test_secrets_are_shown_once_and_stored_sealed(
    app: Flask, api: Api, database: Database, receiver: Receiver
) -> None:
    webhook = create_webhook(api, receiver)
    secret = webhook["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert webhook["secret_hint"] == f"whsec_…{secret[-4:]}"
    answers = [
        api.get("/webhooks"),
        api.get(f"/webhooks/{webhook['id']}"),
        api.patch(f"/webhooks/{webhook['id']}", {"name": "ERP sync"}),
        api.get("/audit"),
    ]
    for answer in answers:
        assert answer.status_code == 200
        assert secret not in answer.get_data(as_text=True)
        assert '"secret"' not in answer.get_data(as_text=True)
    with database.session() as session:
        stored = session.scalars(sa.select(Webhook)).one()
        assert secret not in stored.secret_sealed

    rotated = api.post(f"/webhooks/{webhook['id']}/rotate").get_json()
    assert rotated["secret"] != secret and rotated["secret_hint"].endswith(rotated["secret"][-4:])
    with pytest.raises(DeliveryFailed, match="HTTP 400"):  # signed with the new secret
        send(app, database, webhook["id"], "evt-6")
    assert receiver.bad_signatures == 1 and receiver.taken == []
    receiver.secret = rotated["secret"]
    send(app, database, webhook["id"], "evt-6")
    assert [event["id"] for event in receiver.taken] == ["evt-6"]


def test_bad_webhooks_are_refused_naming_each_field(api: Api, receiver: Receiver) -> None:
    answer = api.post(
        "/webhooks",
        {"name": " ", "url": receiver.url, "events": ["Record Created"], "objects": ["nope"]},
    )
    assert answer.status_code == 422
    fields = [d["field"] for d in answer.get_json()["error"]["details"]]
    assert fields == ["name", "events[0]", "objects[0]"]
    assert api.post("/webhooks", {"name": "x", "url": receiver.url}).status_code == 422
    answer = api.post("/webhooks", {"name": "x", "url": receiver.url, "events": [], "secret": "s"})
    assert [d["field"] for d in answer.get_json()["error"]["details"]] == ["secret"]
    created = create_webhook(api, receiver)
    answer = api.patch(f"/webhooks/{created['id']}", {"secret_hint": "x"})
    assert answer.status_code == 422
    assert api.patch("/webhooks/999", {"name": "y"}).status_code == 404
    assert api.get("/webhooks/999/deliveries").status_code == 404
    assert api.get(f"/webhooks/{created['id']}/deliveries?limit=0").status_code == 400
    assert api.get("/webhooks").get_json()["items"][0]["name"] == "ERP"


def test_only_administrators_manage_webhooks(
    api: Api, database: Database, receiver: Receiver
) -> None:
    created = create_webhook(api, receiver)
    body = {"email": "clerk@example.com", "password": "a long clerk password"}
    assert api.post("/users", body).status_code == 201
    with database.session() as session:
        token = issue_token(session, "clerk@example.com", name="t")
        session.commit()
    clerk = Api(api.client, token)
    for answer in [
        clerk.get("/webhooks"),
        clerk.post("/webhooks", {"name": "x", "url": receiver.url, "events": ["a.b"]}),
        clerk.get(f"/webhooks/{created['id']}"),
        clerk.post(f"/webhooks/{created['id']}/rotate"),
        clerk.get(f"/webhooks/{created['id']}/deliveries"),
        clerk.delete(f"/webhooks/{created['id']}"),
    ]:
        assert answer.status_code == 403
        assert created["secret"] not in answer.get_data(as_text=True)


def test_changes_are_audited(api: Api, receiver: Receiver) -> None:
    created = create_webhook(api, receiver)
    api.patch(f"/webhooks/{created['id']}", {"events": ["record.created", "record.updated"]})
    api.post(f"/webhooks/{created['id']}/rotate")
    api.delete(f"/webhooks/{created['id']}")
    actions = [e["action"] for e in api.get("/audit?action=webhook.").get_json()["items"]]
    assert actions == [
        "webhook.deleted",
        "webhook.secret_rotated",
        "webhook.updated",
        "webhook.created",
    ]


def test_a_webhook_wants_its_events_on_its_objects_while_active() -> None:
    every = Webhook(events=["record.created"], objects=[], active=True)
    dealers = Webhook(events=["record.created", "record.deleted"], objects=["dealer"], active=True)
    off = Webhook(events=["record.created"], objects=[], active=False)
    assert wants(every, "record.created", "sales_order")
    assert not wants(every, "record.updated", "sales_order")
    assert wants(dealers, "record.deleted", "dealer")
    assert not wants(dealers, "record.created", "sales_order")
    assert not wants(off, "record.created", "dealer")

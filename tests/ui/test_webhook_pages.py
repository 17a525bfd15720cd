"""Setup pages of webhooks: create (the secret shown once), edit, refusals next to their
field, rotate, the delivery log, and administrators only."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.platform.runtime.webhook_receiver import Receiver, running_receiver
from tests.ui.conftest import SignIn, csrf_of
from trellis.exceptions import DeliveryFailed
from trellis.extensions import database_of
from trellis.platform.runtime.models import Webhook
from trellis.platform.runtime.webhooks import WebhookSettings, event_payload
from trellis.platform.runtime.webhooks.delivery import deliver

ADMIN = "admin@example.com"
SECRET_RE = re.compile(r"<code class=\"secret\" data-secret>(whsec_[^<]+)</code>")


@pytest.fixture
def receiver(pack_app: Flask) -> Iterator[Receiver]:
    pack_app.config["WEBHOOK_ALLOWED_NETWORKS"] = "127.0.0.0/8"
    with running_receiver() as found:
        yield found


def create(client: FlaskClient, **values: str | list[str]) -> tuple[int, str]:
    page = client.get("/setup/webhooks/new").get_data(as_text=True)
    data: dict[str, str | list[str]] = {"csrf_token": csrf_of(page), "active": "true", **values}
    answer = client.post("/setup/webhooks/new", data=data)
    assert answer.status_code == 201, answer.get_data(as_text=True)[:2000]
    assert answer.headers["Cache-Control"] == "no-store"
    match = SECRET_RE.search(answer.get_data(as_text=True))
    assert match
    found = re.search(r"/setup/webhooks/(\d+)\"", answer.get_data(as_text=True))
    assert found
    return int(found.group(1)), match.group(1)


def test_an_admin_creates_a_webhook_and_sees_its_secret_once(
    sign_in: SignIn, pack_app: Flask, receiver: Receiver
) -> None:
    client = sign_in(ADMIN, language="en")
    assert "/setup/webhooks" in client.get("/").get_data(as_text=True)
    webhook_id, secret = create(
        client,
        name="ERP sync",
        url=receiver.url,
        events=["record.created", "record.updated"],
        other_events="order.confirmed",
        objects=["dealer"],
    )
    with database_of(pack_app).session() as session:
        stored = session.get(Webhook, webhook_id)
        assert stored is not None
        assert stored.events == ["record.created", "record.updated", "order.confirmed"]
        assert stored.objects == ["dealer"] and stored.active is True
    for path in ["/setup/webhooks", f"/setup/webhooks/{webhook_id}", "/setup/webhooks/new"]:
        page = client.get(path).get_data(as_text=True)
        assert secret not in page
    listing = client.get("/setup/webhooks").get_data(as_text=True)
    assert "ERP sync" in listing and f"whsec_…{secret[-4:]}" in listing

    edit = client.get(f"/setup/webhooks/{webhook_id}").get_data(as_text=True)
    assert 'value="order.confirmed"' in edit
    rotated = client.post(
        f"/setup/webhooks/{webhook_id}/rotate", data={"csrf_token": csrf_of(edit)}
    )
    assert rotated.status_code == 200
    new_match = SECRET_RE.search(rotated.get_data(as_text=True))
    assert new_match and new_match.group(1) != secret


def test_refusals_appear_next_to_their_field_and_create_nothing(
    sign_in: SignIn, pack_app: Flask, receiver: Receiver
) -> None:
    client = sign_in(ADMIN, language="en")
    page = client.get("/setup/webhooks/new").get_data(as_text=True)
    pack_app.config["WEBHOOK_ALLOWED_NETWORKS"] = ""
    answer = client.post(
        "/setup/webhooks/new",
        data={"csrf_token": csrf_of(page), "name": "x", "url": receiver.url, "active": "true"},
    )
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert "The webhook was not saved" in html
    assert "a private or local address" in html and "choose at least one event" in html
    assert f'value="{receiver.url}"' in html  # what was typed is kept
    answer = client.post(
        "/setup/webhooks/new",
        data={"csrf_token": csrf_of(page), "name": "x", "url": "ftp://x", "events": "a.b"},
    )
    assert "only http:// and https://" in answer.get_data(as_text=True)
    answer = client.post(
        "/setup/webhooks/new",
        data={"csrf_token": csrf_of(page), "name": "", "url": "https://x", "events": "a.b"},
    )
    assert answer.status_code == 422 and "Length must be between 1 and 120." in answer.get_data(
        as_text=True
    )
    with database_of(pack_app).session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Webhook)) == 0


def test_an_admin_edits_deletes_and_reads_the_delivery_log(
    sign_in: SignIn, pack_app: Flask, receiver: Receiver
) -> None:
    client = sign_in(ADMIN, language="en")
    webhook_id, secret = create(client, name="ERP", url=receiver.url, events=["record.created"])
    receiver.secret = secret
    receiver.script = [503]
    payload = event_payload("record.created", "dealer", {"id": 1})
    with database_of(pack_app).session() as session:
        settings = WebhookSettings.of(pack_app.config)
        with pytest.raises(DeliveryFailed, match="HTTP 503"):
            deliver(session, "evt-ui-1", webhook_id, payload, settings)
        deliver(session, "evt-ui-1", webhook_id, payload, settings, attempt=2)
        session.commit()
    log = client.get(f"/setup/webhooks/{webhook_id}/deliveries").get_data(as_text=True)
    assert log.count("evt-ui-1") == 2 and '<span class="badge danger">503</span>' in log
    assert '<span class="badge">200</span>' in log and " ms</td>" in log
    assert "&#34;received&#34;: true" in log or '"received": true' in log

    edit = client.get(f"/setup/webhooks/{webhook_id}").get_data(as_text=True)
    saved = client.post(
        f"/setup/webhooks/{webhook_id}",
        data={
            "csrf_token": csrf_of(edit),
            "name": "ERP 2",
            "url": receiver.url,
            "events": ["record.deleted"],
        },
        follow_redirects=True,
    )
    assert "Saved." in saved.get_data(as_text=True)
    with database_of(pack_app).session() as session:
        stored = session.get(Webhook, webhook_id)
        assert stored is not None
        assert (stored.name, stored.events, stored.active) == ("ERP 2", ["record.deleted"], False)
    gone = client.post(
        f"/setup/webhooks/{webhook_id}/delete",
        data={"csrf_token": csrf_of(edit)},
        follow_redirects=True,
    )
    assert "Webhook ERP 2 deleted." in gone.get_data(as_text=True)
    assert client.get(f"/setup/webhooks/{webhook_id}").status_code == 404


def test_webhook_pages_are_for_administrators_only(
    sign_in: SignIn, pack_app: Flask, receiver: Receiver
) -> None:
    admin = sign_in(ADMIN, language="en")
    webhook_id, _secret = create(admin, name="ERP", url=receiver.url, events=["record.created"])
    dealer = sign_in("east.admin@example.com")
    for path in [
        "/setup/webhooks",
        "/setup/webhooks/new",
        f"/setup/webhooks/{webhook_id}",
        f"/setup/webhooks/{webhook_id}/deliveries",
    ]:
        assert dealer.get(path).status_code == 403
    token = csrf_of(dealer.get("/").get_data(as_text=True))
    assert (
        dealer.post(f"/setup/webhooks/{webhook_id}/rotate", data={"csrf_token": token}).status_code
        == 403
    )
    assert "/setup/webhooks" not in dealer.get("/").get_data(as_text=True)

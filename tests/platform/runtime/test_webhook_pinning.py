"""Deliveries go to the address the target check resolved and checked (no second DNS
lookup to rebind), with the URL's host name in ``Host``, in TLS's SNI and as the name the
certificate must hold. Real receivers on loopback, reached as ``localhost``."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask

from tests.conftest import Api
from tests.platform.runtime.webhook_receiver import Receiver, running_receiver
from trellis.exceptions import DeliveryFailed
from trellis.extensions import Database
from trellis.platform.runtime.models import WebhookDelivery
from trellis.platform.runtime.webhooks import WebhookSettings, event_payload
from trellis.platform.runtime.webhooks.delivery import deliver

LOOPBACK = "127.0.0.0/8,::1/128"  # localhost may answer ::1 first: nothing listens there


@pytest.fixture
def app(app: Flask) -> Flask:
    app.config["WEBHOOK_ALLOWED_NETWORKS"] = LOOPBACK
    app.config["WEBHOOK_TIMEOUT"] = 2
    return app


def make_webhook(api: Api, receiver: Receiver) -> int:
    created = api.post("/webhooks", {"name": "ERP", "url": receiver.url, "events": ["a.b"]})
    assert created.status_code == 201, created.get_json()
    receiver.secret = created.get_json()["secret"]
    webhook_id: int = created.get_json()["id"]
    return webhook_id


def send(app: Flask, database: Database, webhook_id: int, event_id: str) -> WebhookDelivery:
    settings = WebhookSettings.of(app.config)
    with database.session() as session:
        delivery = deliver(
            session, event_id, webhook_id, event_payload("a.b", None, None), settings
        )
        assert delivery is not None
        session.commit()
        return delivery


def test_an_http_delivery_goes_to_the_checked_address_under_its_host_name(
    app: Flask, api: Api, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_receiver(url_host="localhost") as receiver:
        webhook_id = make_webhook(api, receiver)
        port = receiver.url.split(":")[2].split("/")[0]
        # From here on, a rebinding attacker's DNS: the truth once (what the delivery's
        # check gets), then 127.0.0.2, where nothing listens. The names asked are counted.
        real = socket.getaddrinfo
        asked: list[str] = []

        def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
            asked.append(str(host))
            if host == "localhost" and asked.count("localhost") > 1:
                return real("127.0.0.2", *args, **kwargs)
            return real(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", resolve)
        delivery = send(app, database, webhook_id, "evt-pinned")
    assert delivery.ok and delivery.status_code == 200
    assert asked.count("localhost") == 1  # the check's lookup only: none by the HTTP client
    [headers] = receiver.headers
    assert headers["Host"] == f"localhost:{port}"
    assert [event["id"] for event in receiver.taken] == ["evt-pinned"]


def test_the_checked_addresses_are_tried_in_order_while_refused(
    app: Flask, api: Api, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name with two addresses, the first with nothing listening: the delivery goes on
    to the second, as a client connecting by name would — but only among those checked."""
    with running_receiver(url_host="localhost") as receiver:
        webhook_id = make_webhook(api, receiver)
        real = socket.getaddrinfo

        def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
            if host == "localhost":
                return real("127.0.0.2", *args, **kwargs) + real("127.0.0.1", *args, **kwargs)
            return real(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", resolve)
        delivery = send(app, database, webhook_id, "evt-second")
    assert delivery.ok
    assert [event["id"] for event in receiver.taken] == ["evt-second"]


def certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` (its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem, key_file = folder / f"{name}.pem", folder / f"{name}.key"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pem, key_file


def tls_context(pem: Path, key: Path, names: list[str | None]) -> ssl.SSLContext:
    """A server context that serves ``pem`` and lists the SNI names clients send."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem, key)

    def record(_socket: Any, server_name: str | None, _context: Any) -> None:
        names.append(server_name)

    context.sni_callback = record
    return context


def test_an_https_delivery_sends_the_host_name_in_sni_and_checks_the_certificate(
    app: Flask, api: Api, database: Database, tmp_path: Path
) -> None:
    pem, key = certificate(tmp_path, "localhost")
    app.config["WEBHOOK_CA_BUNDLE"] = str(pem)
    names: list[str | None] = []
    with running_receiver(tls_context(pem, key, names), url_host="localhost") as receiver:
        webhook_id = make_webhook(api, receiver)
        delivery = send(app, database, webhook_id, "evt-tls")
    assert delivery.ok, delivery.error
    assert names == ["localhost"]  # SNI: the name, though the connection went to an address
    assert receiver.headers[0]["Host"].startswith("localhost:")
    assert [event["id"] for event in receiver.taken] == ["evt-tls"]


def test_a_certificate_for_another_name_is_refused(
    app: Flask, api: Api, database: Database, tmp_path: Path
) -> None:
    """The address is pinned, the name is not given up: a trusted certificate that does not
    name the URL's host fails the delivery (logged), nothing is sent."""
    pem, key = certificate(tmp_path, "other.example")
    app.config["WEBHOOK_CA_BUNDLE"] = str(pem)
    with running_receiver(tls_context(pem, key, []), url_host="localhost") as receiver:
        webhook_id = make_webhook(api, receiver)
        settings = WebhookSettings.of(app.config)
        with database.session() as session:
            with pytest.raises(DeliveryFailed):
                deliver(
                    session, "evt-wrong", webhook_id, event_payload("a.b", None, None), settings
                )
            session.commit()  # as the relay does: the failed attempt's log row stays
    assert receiver.requests == 0
    with database.session() as session:
        logged = session.query(WebhookDelivery).filter_by(event_id="evt-wrong").one()
    assert not logged.ok and logged.status_code is None
    assert "doesn't match 'other.example'" in (logged.error or "")

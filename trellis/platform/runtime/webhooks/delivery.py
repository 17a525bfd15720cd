"""Delivering one webhook event: sign, POST, log the attempt, raise so the relay retries.

The relay (``runtime/jobs``, through ``outbox_wiring``) calls ``deliver`` at least once per
event and retries it with back-off while it raises; the event's id is stable across
attempts, so a receiver de-duplicates on ``Trellis-Event-Id``. The POST goes to an address
the target check has just resolved and checked, under the URL's host name (``Host``, SNI,
the certificate's name): DNS pinning. A non-2xx answer, a timeout, a refused connection, a
certificate not valid for the name and a target that now resolves into a private network
are all failures.

Each attempt is logged in the deliverer's session and ``DeliveryFailed`` is raised after
it: the relay commits that session for a failure it was told of (the log row stays) and
retries the event. A session on its own connection would not do: on SQLite the relay's
session already holds the write lock.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from trellis.exceptions import DeliveryFailed, TargetRefused
from trellis.platform.messages import N_
from trellis.platform.runtime.models import Webhook, WebhookDelivery, utcnow
from trellis.platform.runtime.webhooks.service import WebhookSettings, secret_of
from trellis.platform.runtime.webhooks.signing import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    signature_header,
)
from trellis.platform.runtime.webhooks.targets import Address, check_target

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
EXCERPT_BYTES = 1000  # of a receiver's answer, kept in the log
USER_AGENT = "Trellis-Webhooks/1"


def body_of(event_id: str, payload: dict[str, Any]) -> bytes:
    """The POST body: ``{"id", "type", "object", "record", "occurred_at"}`` as compact JSON."""
    return json.dumps(
        {"id": event_id, **payload}, ensure_ascii=False, separators=(",", ":")
    ).encode()


def deliver(
    session: Session,
    event_id: str,
    webhook_id: int,
    payload: dict[str, Any],
    settings: WebhookSettings,
    attempt: int = 1,
) -> WebhookDelivery | None:
    """POST one event to one webhook and log it; ``DeliveryFailed`` when it did not land.

    A webhook deleted or switched off since the event was written gets nothing (None).
    """
    webhook = session.get(Webhook, webhook_id)
    if webhook is None or not webhook.active:
        log.info("webhook %s is gone or inactive: event %s dropped", webhook_id, event_id)
        return None
    body = body_of(event_id, payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_ID_HEADER: event_id,
        SIGNATURE_HEADER: signature_header(secret_of(webhook, settings), body),
    }
    entry: dict[str, Any] = {
        "webhook_id": webhook.id,
        "event_id": event_id,
        "event_type": str(payload.get("type", ""))[:60],
        "attempt": attempt,
        "ok": False,
        "status_code": None,
        "error": None,
        "response_excerpt": "",
    }
    started = time.perf_counter()
    try:
        # Checked again (what a name resolves to moves), and sent to what was checked.
        addresses = check_target(webhook.url, settings.allowed)
        entry.update(_post(webhook.url, addresses, body, headers, settings))
    except TargetRefused as exc:
        entry["error"] = exc.message[:500]
    except requests.Timeout:
        entry["error"] = str(N_("no answer within %(seconds)s s", seconds=settings.timeout))
    except requests.RequestException as exc:
        entry["error"] = f"{type(exc).__name__}: {exc}"[:500]
    entry["duration_ms"] = round((time.perf_counter() - started) * 1000)
    delivery = _log(session, entry)
    if not delivery.ok:
        reason = delivery.error or f"HTTP {delivery.status_code}"
        raise DeliveryFailed(
            N_(
                "webhook %(id)s did not take event %(event)s: %(reason)s",
                id=webhook.id,
                event=event_id,
                reason=reason,
            )
        )
    return delivery


def _post(
    url: str,
    addresses: list[Address],
    body: bytes,
    headers: dict[str, str],
    settings: WebhookSettings,
) -> dict[str, Any]:
    """POST to ``url`` at one of ``addresses`` — those ``check_target`` resolved and
    checked, tried in order while a connection is refused — without resolving its host
    name again, and without following redirects; the status and the answer's first bytes.

    The connection goes to the address, but the ``Host`` header is the URL's, and over
    HTTPS the TLS handshake sends the host name (SNI) and the certificate is checked
    against it: what the receiver sees is a request for its own name, and a DNS answer
    that changed between the check and the connection (rebinding) is never connected to.
    """
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    name = _idna(str(parts.hostname))
    shown = f"[{name}]" if ":" in name else name  # an IPv6 literal
    host_header = shown if port == default else f"{shown}:{port}"
    refused: requests.ConnectionError | None = None
    for address in dict.fromkeys(addresses):
        netloc = f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
        pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        with _session(name, settings) as session:
            try:
                with session.post(
                    pinned,
                    data=body,
                    headers={**headers, "Host": host_header},
                    timeout=settings.timeout,
                    allow_redirects=False,
                    stream=True,
                    verify=settings.ca_bundle or True,
                ) as response:
                    raw = response.raw.read(EXCERPT_BYTES, decode_content=True) or b""
                    return {
                        "status_code": response.status_code,
                        "ok": 200 <= response.status_code < 300,
                        "response_excerpt": raw.decode(
                            response.encoding or "utf-8", errors="replace"
                        ),
                    }
            except requests.ConnectionError as exc:
                if isinstance(exc, requests.Timeout | requests.exceptions.SSLError):
                    raise  # the time is spent, or the receiver is not who it says
                refused = exc  # nothing listens there: the next address
    assert refused is not None  # check_target answers at least one address
    raise refused


class _PinnedAdapter(HTTPAdapter):
    """An HTTPS transport that connects to the address in the URL while TLS sends and
    verifies ``hostname`` (SNI, the certificate's names): urllib3's ``server_hostname``
    and ``assert_hostname``. No retries of its own: the outbox retries."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        super().__init__(max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        """The pools, told the host name the connections are for."""
        pool_kwargs.update(server_hostname=self.hostname, assert_hostname=self.hostname)
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)


@contextmanager
def _session(hostname: str, settings: WebhookSettings) -> Iterator[requests.Session]:
    """A session for one delivery: the environment's proxies and ``.netrc`` are not used (a
    proxy would resolve the name itself, and credentials must not go to a receiver)."""
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", HTTPAdapter(max_retries=0))
    session.mount("https://", _PinnedAdapter(hostname))
    try:
        yield session
    finally:
        session.close()


def _idna(host: str) -> str:
    """The host name as it goes on the wire (``例子.中国`` → ``xn--fsqu00a.xn--fiqs8s``)."""
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host  # an IP address, or a name check_target could not have resolved


def _log(session: Session, entry: dict[str, Any]) -> WebhookDelivery:
    """The attempt, written in the deliverer's session: the relay commits it with the
    event's outcome, a failure included (it retries the event, the row stays)."""
    delivery = WebhookDelivery(**entry, delivered_at=utcnow())
    session.add(delivery)
    session.flush()
    return delivery

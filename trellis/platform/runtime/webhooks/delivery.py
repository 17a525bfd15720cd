"""Delivering one webhook event: sign, POST, log the attempt, raise so the relay retries.

The relay (``runtime/jobs``, through ``outbox_wiring``) calls ``deliver`` at least once per
event and retries it with back-off while it raises; the event's id is stable across attempts, so a
receiver de-duplicates on ``Trellis-Event-Id``. A non-2xx answer, a timeout, a refused
connection and a target that now resolves into a private network are all failures.

Each attempt is logged in the deliverer's session and ``DeliveryFailed`` is raised after
it: the relay commits that session for a failure it was told of (the log row stays) and
retries the event. A session on its own connection would not do: on SQLite the relay's
session already holds the write lock.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import requests

from trellis.exceptions import DeliveryFailed, TargetRefused
from trellis.platform.messages import N_
from trellis.platform.runtime.models import Webhook, WebhookDelivery, utcnow
from trellis.platform.runtime.webhooks.service import WebhookSettings, secret_of
from trellis.platform.runtime.webhooks.signing import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    signature_header,
)
from trellis.platform.runtime.webhooks.targets import check_target

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
        check_target(webhook.url, settings.allowed)  # again: what the name resolves to moves
        entry.update(_post(webhook.url, body, headers, settings.timeout))
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


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> dict[str, Any]:
    """POST without following redirects; the status and the answer's first bytes."""
    with requests.post(
        url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
    ) as response:
        raw = response.raw.read(EXCERPT_BYTES, decode_content=True) or b""
        return {
            "status_code": response.status_code,
            "ok": 200 <= response.status_code < 300,
            "response_excerpt": raw.decode(response.encoding or "utf-8", errors="replace"),
        }


def _log(session: Session, entry: dict[str, Any]) -> WebhookDelivery:
    """The attempt, written in the deliverer's session: the relay commits it with the
    event's outcome, a failure included (it retries the event, the row stays)."""
    delivery = WebhookDelivery(**entry, delivered_at=utcnow())
    session.add(delivery)
    session.flush()
    return delivery

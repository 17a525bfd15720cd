"""Webhooks: signed POSTs of record events to administrators' endpoints (docs/webhooks.md).

``publish`` writes the events (outbox, caller's transaction); ``delivery.deliver`` sends
one; ``WebhookService`` manages them; ``signing`` is the signature both sides compute.
"""

from __future__ import annotations

from trellis.platform.runtime.webhooks.events import event_payload, publish, record_json, send_test
from trellis.platform.runtime.webhooks.service import (
    RECORD_EVENTS,
    WebhookService,
    WebhookSettings,
)

__all__ = [
    "RECORD_EVENTS",
    "WebhookService",
    "WebhookSettings",
    "event_payload",
    "publish",
    "record_json",
    "send_test",
]

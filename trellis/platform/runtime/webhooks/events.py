"""Publishing record events to webhooks, and the body a receiver gets.

Automations decide when something is published (``runtime/automations``); this module only
turns "this happened to this record" into one outbox event per active webhook that wants
it, in the caller's transaction: the events exist exactly when the change committed.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from trellis.exceptions import NotFound
from trellis.platform.messages import N_
from trellis.platform.runtime import outbox_wiring
from trellis.platform.runtime.models import Webhook, iso, utcnow
from trellis.platform.runtime.records.serialise import serialise
from trellis.platform.runtime.webhooks.service import TEST_EVENT, wants

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from trellis.platform.runtime.registry import MetaRegistry


def event_payload(
    event_type: str,
    object_name: str | None,
    record: dict[str, Any] | None,
    occurred_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """What a webhook receives besides the event's ``id``: ``type``, ``object``, ``record``
    (the record's JSON as the API answers it) and ``occurred_at`` (RFC 3339, UTC)."""
    return {
        "type": event_type,
        "object": object_name,
        "record": record,
        "occurred_at": iso(occurred_at or utcnow()),
    }


def record_json(
    session: Session, registry: MetaRegistry, object_name: str, record_id: int
) -> dict[str, Any]:
    """A record as ``GET /records/<object>/<id>`` answers an administrator — including a
    soft-deleted one, for ``record.deleted`` — without its lines."""
    meta = registry.get(object_name)
    row = (
        session.execute(sa.select(meta.table).where(meta.table.c.id == record_id))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(N_("no %(object)s %(id)s", object=object_name, id=record_id))
    return serialise(meta, row)


def publish(
    session: Session,
    event_type: str,
    object_name: str | None,
    record: dict[str, Any] | None,
    *,
    occurred_at: dt.datetime | None = None,
) -> list[str]:
    """One outbox event per active webhook that wants ``event_type`` on ``object_name``,
    written in the caller's transaction; the events' ids (none when no webhook wants it).

    ``record`` is the record's JSON as the API returns it (``record_json`` reads one).
    """
    payload = event_payload(event_type, object_name, record, occurred_at)
    webhooks = session.scalars(
        sa.select(Webhook).where(Webhook.active.is_(True)).order_by(Webhook.id)
    )
    return [
        outbox_wiring.emit(session, "webhook", payload, target=str(webhook.id))
        for webhook in webhooks
        if wants(webhook, event_type, object_name)
    ]


def send_test(session: Session, webhook: Webhook) -> str:
    """A ``webhook.test`` event for this one webhook (whatever its events), through the
    outbox like any other; its event id."""
    payload = event_payload(TEST_EVENT, None, None)
    return outbox_wiring.emit(session, "webhook", payload, target=str(webhook.id))

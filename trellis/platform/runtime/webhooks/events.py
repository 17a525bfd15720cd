"""Publishing record events to webhooks, and the body a receiver gets.

Automations decide when something is published (``runtime/automations``); this module only
turns "this happened to this record" into one outbox event per active webhook that wants
it, in the caller's transaction: the events exist exactly when the change committed.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from trellis.exceptions import NotFound
from trellis.platform.messages import N_
from trellis.platform.runtime import outbox_wiring
from trellis.platform.runtime.models import Webhook, iso, utcnow
from trellis.platform.runtime.records.serialise import serialise
from trellis.platform.runtime.versioning import METADATA_CHANGED
from trellis.platform.runtime.webhooks.service import TEST_EVENT, Route, wants

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


_ROUTES_KEY = "webhooks.routes"  # in MetaRegistry.derived: (revision, routes)


def routes(session: Session, registry: MetaRegistry | None = None) -> tuple[Route, ...]:
    """The active webhooks, in id order. With ``registry``, read once per metadata
    revision and kept with it: every change of a webhook's routing moves the revision
    (``WebhookService``), so a record write that publishes reads no webhook table. Inside
    a transaction that changed metadata itself (not committed yet) they are read afresh."""
    revision = registry.revision if registry is not None else None
    cacheable = registry is not None and revision is not None
    if cacheable and not session.info.get(METADATA_CHANGED):
        assert registry is not None
        kept = registry.derived.get(_ROUTES_KEY)
        if kept is not None and kept[0] == revision:
            return cast("tuple[Route, ...]", kept[1])
    found = tuple(
        Route(row.id, tuple(row.events or ()), tuple(row.objects or ()))
        for row in session.execute(
            sa.select(Webhook.id, Webhook.events, Webhook.objects)
            .where(Webhook.active.is_(True))
            .order_by(Webhook.id)
        )
    )
    if cacheable and not session.info.get(METADATA_CHANGED):
        assert registry is not None
        registry.derived[_ROUTES_KEY] = (revision, found)
    return found


def publish(
    session: Session,
    event_type: str,
    object_name: str | None,
    record: dict[str, Any] | None,
    *,
    occurred_at: dt.datetime | None = None,
    registry: MetaRegistry | None = None,
) -> list[str]:
    """One outbox event per active webhook that wants ``event_type`` on ``object_name``,
    written in the caller's transaction; the events' ids (none when no webhook wants it).

    ``record`` is the record's JSON as the API returns it (``record_json`` reads one).
    With the current ``registry`` the webhooks are not read again within its revision
    (``routes``).
    """
    wanting = [r for r in routes(session, registry) if wants(r, event_type, object_name)]
    if not wanting:
        return []
    payload = event_payload(event_type, object_name, record, occurred_at)
    return [
        outbox_wiring.emit(session, "webhook", payload, target=str(route.id)) for route in wanting
    ]


def send_test(session: Session, webhook: Webhook) -> str:
    """A ``webhook.test`` event for this one webhook (whatever its events), through the
    outbox like any other; its event id."""
    payload = event_payload(TEST_EVENT, None, None)
    return outbox_wiring.emit(session, "webhook", payload, target=str(webhook.id))

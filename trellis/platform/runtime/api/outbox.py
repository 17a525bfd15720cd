"""The outbox's failed events (administrators only): list them, read one, retry one.

Events are named by their ``event_id`` (the UUID receivers see in ``Trellis-Event-Id``),
checked as a UUID before any query; an unknown one is 404.
"""

from __future__ import annotations

from typing import Any

from flask import g, jsonify, request

from trellis.exceptions import BadRequest, Forbidden
from trellis.platform.runtime.api import bp, caller, commit, record_event
from trellis.platform.runtime.api.schemas import (
    OutboxEventDetailSchema,
    OutboxPageSchema,
    OutboxQuerySchema,
    load,
    outbox_source,
)
from trellis.platform.runtime.jobs import outbox

EVENT, EVENTS, QUERY = OutboxEventDetailSchema(), OutboxPageSchema(), OutboxQuerySchema()


def _require_admin() -> None:
    if not caller().is_admin:
        raise Forbidden("only administrators may read or retry outbox events")


@bp.get("/outbox")
def list_outbox_events() -> Any:
    """``GET /outbox``: the ``failed`` (default) or ``retrying`` events, newest first,
    before an id, at most 500; 400 for a bad parameter."""
    _require_admin()
    args = load(QUERY, request.args, what="query", refusal=BadRequest)
    items = outbox.list_events(
        g.session, state=args["status"], before_id=args.get("before"), limit=args["limit"]
    )
    return jsonify(EVENTS.dump({"items": [outbox_source(entry) for entry in items]}))


@bp.get("/outbox/<event_id>")
def get_outbox_event(event_id: str) -> Any:
    """``GET /outbox/<event id>``: one event, with its payload (404 when there is none)."""
    _require_admin()
    return jsonify(EVENT.dump(outbox_source(outbox.get_event(g.session, event_id))))


@bp.post("/outbox/<event_id>/retry")
def retry_outbox_event(event_id: str) -> Any:
    """``POST /outbox/<event id>/retry``: a failed event due again, with a fresh count of
    attempts (409 ``not_retryable`` unless it failed); relayed after the commit. Audited
    as ``outbox.retried``."""
    _require_admin()
    entry = outbox.retry_event(g.session, event_id)
    record_event("outbox.retried", f"outbox/{event_id}", {"kind": entry.kind})
    commit()
    g.session.refresh(entry)
    return jsonify(EVENT.dump(outbox_source(entry)))

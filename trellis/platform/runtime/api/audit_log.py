"""The audit trail (administrators only)."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify, request

from trellis.exceptions import BadRequest
from trellis.platform.runtime import audit
from trellis.platform.runtime.api import (
    bp,
    require_admin,
)


@bp.get("/audit")
def list_audit() -> Any:
    require_admin()
    args = request.args
    try:
        limit = int(args.get("limit", 100))
        actor = int(args["actor"]) if args.get("actor") else None
        before = int(args["before"]) if args.get("before") else None
    except ValueError:
        raise BadRequest("limit, actor and before are whole numbers") from None
    if not 1 <= limit <= 500:
        raise BadRequest("limit must be between 1 and 500")
    items = audit.list_events(
        g.session, action=args.get("action"), actor_id=actor, before_id=before, limit=limit
    )
    return jsonify({"items": items})

"""The audit trail (administrators only)."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify, request

from trellis.exceptions import BadRequest
from trellis.platform.runtime import audit
from trellis.platform.runtime.api import bp, require_admin
from trellis.platform.runtime.api.schemas import AuditPageSchema, AuditQuerySchema, load

AUDIT_QUERY, AUDIT_PAGE = AuditQuerySchema(), AuditPageSchema()


@bp.get("/audit")
def list_audit() -> Any:
    """``GET /audit``: audit events newest first, by action prefix, actor or before an id,
    at most 500 (administrators only, else 403); 400 for a bad query parameter.
    """
    require_admin()
    args = load(AUDIT_QUERY, request.args, what="query", refusal=BadRequest)
    items = audit.list_events(
        g.session,
        action=args.get("action"),
        actor_id=args.get("actor"),
        before_id=args.get("before"),
        limit=args["limit"],
    )
    return jsonify(AUDIT_PAGE.dump({"items": items}))

"""The caller (``/me``), users (administrators only) and the caller's own tokens."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import g, jsonify

from trellis.exceptions import BadRequest
from trellis.platform.runtime.api import (
    bp,
    caller,
    commit,
    json_body,
    record_event,
    registry,
    require_admin,
)
from trellis.platform.runtime.identity import UserService
from trellis.platform.runtime.identity.tokens import (
    create_token,
    list_tokens,
    revoke_token,
    token_dict,
)
from trellis.platform.runtime.models import User


def _users() -> UserService:
    return UserService(g.session, registry(), caller().user_id)


@bp.get("/me")
def me() -> Any:
    who = caller()
    body = _users().as_dict(_users().get(who.user_id))
    body["permissions"] = {
        name: {
            "scopes": {
                op: sorted(who.permissions.scopes(name, op))
                for op in ("read", "create", "update", "delete", "export")
            },
            "hidden_fields": sorted(who.permissions.hidden_fields(name, list(meta.fields))),
        }
        for name, meta in sorted((m.name, m) for m in registry().all())
        if who.permissions.scopes(name, "read")
    }
    return jsonify(body)


@bp.get("/users")
def list_users() -> Any:
    require_admin()
    service = _users()
    rows = g.session.scalars(sa.select(User).order_by(User.id))
    return jsonify({"items": [service.as_dict(user) for user in rows]})


@bp.post("/users")
def create_user() -> Any:
    require_admin()
    service = _users()
    user = service.create(json_body())
    record_event("user.created", f"user/{user.id}", _user_audit(service.as_dict(user)))
    commit()
    return jsonify(service.as_dict(user)), 201


@bp.get("/users/<int:user_id>")
def get_user(user_id: int) -> Any:
    require_admin()
    service = _users()
    return jsonify(service.as_dict(service.get(user_id)))


@bp.patch("/users/<int:user_id>")
def update_user(user_id: int) -> Any:
    require_admin()
    service = _users()
    body = json_body()
    user = service.update(user_id, body)
    changed = sorted(body) if isinstance(body, dict) else []
    record_event(
        "user.updated",
        f"user/{user.id}",
        {"changed": changed, **_user_audit(service.as_dict(user))},
    )
    commit()
    return jsonify(service.as_dict(user))


def _user_audit(user: dict[str, Any]) -> dict[str, Any]:
    keys = ("email", "roles", "partner", "is_admin", "is_active")
    return {key: user[key] for key in keys}


@bp.get("/tokens")
def list_my_tokens() -> Any:
    return jsonify({"items": list_tokens(g.session, caller().user_id)})


@bp.post("/tokens")
def create_my_token() -> Any:
    body = json_body()
    if not isinstance(body, dict):
        raise BadRequest('send {"name": …, "expires_in_days": …}')
    row, token = create_token(
        g.session, caller().user_id, str(body.get("name", "")), body.get("expires_in_days")
    )
    record_event("token.created", f"token/{row.id}", {"name": row.name})
    commit()
    return jsonify({**token_dict(row), "token": token}), 201


@bp.delete("/tokens/<int:token_id>")
def revoke_my_token(token_id: int) -> Any:
    row = revoke_token(g.session, caller().user_id, token_id)
    record_event("token.revoked", f"token/{row.id}", {})
    commit()
    return "", 204

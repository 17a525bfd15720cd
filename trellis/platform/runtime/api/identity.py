"""The caller (``/me``), users (administrators only) and the caller's own tokens.

Bodies are loaded and answers dumped through the marshmallow schemas of ``api.schemas``;
the services keep their own checks (the CLI calls them without the API).
"""

from __future__ import annotations

from typing import Any

from flask import g, jsonify

from trellis.platform.metadata.permissions import Operation
from trellis.platform.runtime.api import (
    bp,
    caller,
    commit,
    json_body,
    record_event,
    registry,
    require_admin,
)
from trellis.platform.runtime.api.schemas import (
    MeSchema,
    NewTokenSchema,
    TokenCreateSchema,
    TokenPageSchema,
    UserCreateSchema,
    UserPageSchema,
    UserSchema,
    UserUpdateSchema,
    load,
    row_source,
)
from trellis.platform.runtime.identity import Caller, UserService
from trellis.platform.runtime.identity.tokens import create_token, list_tokens, revoke_token
from trellis.platform.runtime.models import User

ME, USER, USERS = MeSchema(), UserSchema(), UserPageSchema()
USER_CREATE, USER_UPDATE = UserCreateSchema(), UserUpdateSchema()
NEW_TOKEN, TOKENS, TOKEN_CREATE = NewTokenSchema(), TokenPageSchema(), TokenCreateSchema()


def _users() -> UserService:
    return UserService(g.session, registry(), caller().user_id)


def _user_source(service: UserService, user: User, **extra: Any) -> dict[str, Any]:
    return row_source(user, roles=service.roles_of(user.id), **extra)


@bp.get("/me")
def me() -> Any:
    """``GET /me``: the signed-in caller, with their roles and what they may do per object."""
    who = caller()
    service = _users()
    user = service.get(who.user_id)
    return jsonify(ME.dump(_user_source(service, user, permissions=_rights(who))))


def _rights(who: Caller) -> dict[str, Any]:
    """Per object the caller may read: their scopes per operation and the fields hidden."""
    return {
        name: {
            "scopes": {op: sorted(who.permissions.scopes(name, op)) for op in Operation},
            "hidden_fields": sorted(who.permissions.hidden_fields(name, list(meta.fields))),
        }
        for name, meta in sorted((m.name, m) for m in registry().all())
        if who.permissions.scopes(name, Operation.READ)
    }


@bp.get("/users")
def list_users() -> Any:
    """``GET /users``: every user (administrators only, else 403)."""
    require_admin()
    service = _users()
    rows = service.search()
    return jsonify(USERS.dump({"items": [_user_source(service, user) for user in rows]}))


@bp.post("/users")
def create_user() -> Any:
    """``POST /users``: create a user (201), audited; 403 for a non-administrator, 422 for
    a refused field, 409 when the e-mail is taken.
    """
    require_admin()
    data = load(USER_CREATE, json_body(), what="user")
    service = _users()
    user = service.create(data)
    body = USER.dump(_user_source(service, user))
    record_event("user.created", f"user/{user.id}", _user_audit(body))
    commit()
    return jsonify(body), 201


@bp.get("/users/<int:user_id>")
def get_user(user_id: int) -> Any:
    """``GET /users/<id>``: one user (administrators only, else 403); 404 for an unknown id."""
    require_admin()
    service = _users()
    return jsonify(USER.dump(_user_source(service, service.get(user_id))))


@bp.patch("/users/<int:user_id>")
def update_user(user_id: int) -> Any:
    """``PATCH /users/<id>``: change a user, audited with the keys changed; 403 for a
    non-administrator, 404, 422 for a refused field, 409 for taking one's own rights.
    """
    require_admin()
    data = load(USER_UPDATE, json_body(), what="change")
    service = _users()
    user = service.update(user_id, data)
    body = USER.dump(_user_source(service, user))
    record_event("user.updated", f"user/{user.id}", {"changed": sorted(data), **_user_audit(body)})
    commit()
    return jsonify(body)


def _user_audit(user: dict[str, Any]) -> dict[str, Any]:
    keys = ("email", "roles", "partner", "is_admin", "is_active")
    return {key: user[key] for key in keys}


@bp.get("/tokens")
def list_my_tokens() -> Any:
    """``GET /tokens``: the caller's own API tokens, revoked and expired ones too."""
    return jsonify(TOKENS.dump({"items": list_tokens(g.session, caller().user_id)}))


@bp.post("/tokens")
def create_my_token() -> Any:
    """``POST /tokens``: a new token for the caller (201), the token text in this answer
    only; 422 for an unknown key or an expiry outside 1–3650 days.
    """
    data = load(TOKEN_CREATE, json_body(), what="token")
    row, token = create_token(
        g.session, caller().user_id, data.get("name", ""), data.get("expires_in_days")
    )
    record_event("token.created", f"token/{row.id}", {"name": row.name})
    commit()
    return jsonify(NEW_TOKEN.dump(row_source(row, token=token))), 201


@bp.delete("/tokens/<int:token_id>")
def revoke_my_token(token_id: int) -> Any:
    """``DELETE /tokens/<id>``: revoke one of the caller's tokens (204, again too); 404
    for another user's token.
    """
    row = revoke_token(g.session, caller().user_id, token_id)
    record_event("token.revoked", f"token/{row.id}", {})
    commit()
    return "", 204

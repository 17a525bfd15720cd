"""The REST API under ``/api/v1``: metadata, records, identity, audit and OpenAPI.

Views parse input and shape output; the services do the work. Each request is one
unit of work: the session opened in ``before_request`` is committed by the view
that changes something and rolled back by ``teardown`` otherwise, so a failure at
any step leaves nothing half-applied.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Flask, current_app, g, jsonify, request
from sqlalchemy.exc import DataError

from trellis.exceptions import BadRequest, Forbidden
from trellis.extensions import db
from trellis.platform.runtime import audit
from trellis.platform.runtime.auth import authenticate_token, touch_token
from trellis.platform.runtime.identity import (
    Caller,
    RoleService,
    UserService,
    create_token,
    list_tokens,
    revoke_token,
    token_dict,
)
from trellis.platform.runtime.models import User, as_utc
from trellis.platform.runtime.objects import ObjectService
from trellis.platform.runtime.openapi import openapi_document
from trellis.platform.runtime.query import parse_list_query
from trellis.platform.runtime.records import RecordService
from trellis.platform.runtime.registry import MetaRegistry

bp = Blueprint("api", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@bp.errorhandler(DataError)
def value_refused_by_database(exc: DataError) -> Any:
    """Input the database cannot hold that got past validation (a NUL in text on PostgreSQL…).

    Bad input is a 400, never a 500; the request's transaction is rolled back by teardown.
    """
    log.info("value refused by the database on %s %s: %s", request.method, request.path, exc.orig)
    error = BadRequest(
        "the request holds a value the database cannot store (such as a NUL character)"
    )
    return jsonify(error.to_dict()), error.status


def _when(moment: dt.datetime) -> str:
    """A stored moment as ISO 8601 with its zone (SQLite hands them back without it)."""
    return as_utc(moment).isoformat()


def registry() -> MetaRegistry:
    registry: MetaRegistry = current_app.extensions["trellis.registry"]
    return registry


@bp.before_request
def open_unit_of_work() -> None:
    session = db.session()
    g.session = session
    if request.method in WRITE_METHODS:
        # SQLite: take the write lock up front (BEGIN IMMEDIATE) so writers queue.
        session.connection(execution_options={"trellis_write": True})
    identity = authenticate_token(session, request.headers.get("Authorization"))
    registry().ensure_current(session, identity.revision)
    g.caller = build_caller(
        identity.user_id,
        identity.email,
        identity.is_admin,
        identity.partner_id,
        identity.roles,
        identity.token_id,
    )
    if identity.needs_touch:
        g.touch_token = identity.token_id


def build_caller(
    user_id: int,
    email: str,
    is_admin: bool,
    partner_id: int | None,
    roles: tuple[str, ...],
    token_id: int | None = None,
) -> Caller:
    reg = registry()
    return Caller(
        user_id=user_id,
        email=email,
        is_admin=is_admin,
        partner_id=partner_id,
        roles=roles,
        permissions=reg.permissions(roles, is_admin),
        role_permissions=reg.permissions(roles, False),
        token_id=token_id,
    )


@bp.teardown_request
def close_unit_of_work(_exc: BaseException | None) -> None:
    session = g.pop("session", None)
    if session is None:
        return
    if session.info.pop("metadata_changed", False):
        registry().invalidate()  # built from a transaction that did not commit
    session.close()  # rolls back anything not committed
    # Written after the request's transaction is gone: they must outlive its rollback,
    # and on SQLite a second writer inside the request would wait on the first.
    assert db.engine is not None
    token_id = g.pop("touch_token", None)
    if token_id is not None:
        with db.engine.begin() as connection:
            touch_token(connection, token_id)
        audit.record_now(db.engine, "token.used", target=f"token/{token_id}", **_who())
    for action, target, detail in g.pop("deferred_events", []):
        audit.record_now(db.engine, action, target=target, detail=detail, **_who())


def _who() -> dict[str, Any]:
    who = g.get("caller")
    return {
        "actor_id": who.user_id if who else None,
        "actor_email": who.email if who else None,
        "ip": request.remote_addr,
        "user_agent": request.user_agent.string,
    }


def defer_event(action: str, target: str | None, detail: dict[str, Any]) -> None:
    """Audit something about a request that will roll back (a denial, a failure)."""
    g.setdefault("deferred_events", []).append((action, target, detail))


def record_event(action: str, target: str | None, detail: dict[str, Any] | None = None) -> None:
    """Audit a change in the request's own transaction (it commits with the change)."""
    audit.record(g.session, action, target=target, detail=detail, **_who())


def caller() -> Caller:
    who: Caller = g.caller
    return who


def require_admin() -> None:
    if not caller().is_admin:
        raise Forbidden("only administrators may read or change metadata")


def json_body() -> Any:
    raw = request.get_data(cache=True)
    if not raw:
        raise BadRequest("the request needs a JSON body")
    try:
        return json.loads(raw, parse_constant=_not_json)
    except ValueError as exc:
        raise BadRequest(
            "the request body is not valid JSON", [{"field": "", "message": str(exc)}]
        ) from None
    except RecursionError:
        raise BadRequest(
            "the request body is nested too deeply", [{"field": "", "message": "too deep"}]
        ) from None


def _not_json(constant: str) -> Any:
    """Python's json accepts NaN and Infinity; JSON does not."""
    raise ValueError(f"{constant} is not a JSON value")


def objects() -> ObjectService:
    return ObjectService(g.session, registry(), caller().user_id)


def records() -> RecordService:
    return RecordService(g.session, registry(), caller())


def commit() -> None:
    g.session.commit()
    g.session.info.pop("metadata_changed", None)


# --- metadata (administrators only) ----------------------------------------------------


def _definition_out(name: str, version: int, document: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "version": version, "definition": document}


@bp.get("/objects")
def list_objects() -> Any:
    require_admin()
    items = [
        {
            "name": meta.name,
            "label": meta.definition.label,
            "version": meta.version,
            "fields": len(meta.fields),
        }
        for meta in sorted(registry().all(), key=lambda m: m.name)
    ]
    return jsonify({"items": items})


@bp.post("/objects")
def create_object() -> Any:
    require_admin()
    result = objects().create(json_body())
    record_event("object.created", f"object/{result.name}", {"version": result.version})
    commit()
    return jsonify(_definition_out(result.name, result.version, result.document)), 201


@bp.get("/objects/<name>")
def get_object(name: str) -> Any:
    require_admin()
    meta = registry().get(name)
    return jsonify(_definition_out(meta.name, meta.version, meta.definition.document))


@bp.put("/objects/<name>")
def update_object(name: str) -> Any:
    require_admin()
    result = objects().update(name, json_body())
    if result.created:
        record_event("object.updated", f"object/{name}", {"version": result.version})
    commit()
    body = _definition_out(result.name, result.version, result.document)
    body["changed"] = result.created
    return jsonify(body)


@bp.get("/objects/<name>/versions")
def list_versions(name: str) -> Any:
    require_admin()
    items = [
        {
            "version": row.version,
            "author_id": row.author_id,
            "created_at": _when(row.created_at),
            "summary": row.summary,
            "diff": row.diff,
            "restored_from": row.restored_from,
        }
        for row in objects().versions(name)
    ]
    return jsonify({"items": items})


@bp.get("/objects/<name>/versions/<int:version>")
def get_version(name: str, version: int) -> Any:
    require_admin()
    return jsonify(_definition_out(name, version, objects().version_document(name, version)))


@bp.post("/objects/<name>/versions/<int:version>/restore")
def restore_version(name: str, version: int) -> Any:
    require_admin()
    result = objects().restore(name, version)
    record_event("object.restored", f"object/{name}", {"version": result.version, "from": version})
    commit()
    return jsonify(_definition_out(result.name, result.version, result.document))


# --- records -------------------------------------------------------------------------


def _list_query(service: RecordService, object_name: str, operation: str) -> Any:
    """The request's list parameters, checked — after the right to ``operation`` is: without
    it the answer is 403 whatever the query says."""
    meta = registry().get(object_name)
    service.access.require(meta, operation)
    args = request.args
    return parse_list_query(
        meta,
        filter_text=args.get("filter"),
        sort_text=args.get("sort"),
        limit_text=args.get("limit"),
        cursor=args.get("cursor"),
        fields_text=args.get("fields"),
        default_limit=current_app.config["PAGE_SIZE_DEFAULT"],
        max_limit=current_app.config["PAGE_SIZE_MAX"],
        hidden=service.access.hidden(meta),
    )


@bp.get("/records/<object_name>")
def list_records(object_name: str) -> Any:
    service = records()
    return jsonify(service.list_page(object_name, _list_query(service, object_name, "read")))


@bp.get("/records/<object_name>/export")
def export_records(object_name: str) -> Any:
    """CSV of every record the filter matches, within the caller's export scope."""
    service = records()
    names, rows = service.export_rows(object_name, _list_query(service, object_name, "export"))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(names)
    for row in rows:
        writer.writerow([_csv_cell(row.get(name)) for name in names])
    service.session.commit()  # the audit of an admin's bypass, if any
    response = current_app.response_class(buffer.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{object_name}.csv"'
    return response


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value  # keep spreadsheets from running a cell as a formula
    return value


@bp.post("/records/<object_name>")
def create_record(object_name: str) -> Any:
    record = records().create(object_name, json_body())
    commit()
    return jsonify(record), 201


@bp.get("/records/<object_name>/<int:record_id>")
def get_record(object_name: str, record_id: int) -> Any:
    return jsonify(records().get(object_name, record_id))


@bp.patch("/records/<object_name>/<int:record_id>")
def update_record(object_name: str, record_id: int) -> Any:
    record = records().update(object_name, record_id, json_body())
    commit()
    return jsonify(record)


@bp.delete("/records/<object_name>/<int:record_id>")
def delete_record(object_name: str, record_id: int) -> Any:
    records().delete(object_name, record_id)
    commit()
    return "", 204


@bp.post("/records/<object_name>/<int:record_id>/restore")
def restore_record(object_name: str, record_id: int) -> Any:
    record = records().restore(object_name, record_id)
    commit()
    return jsonify(record)


@bp.get("/records/<object_name>/<int:record_id>/history")
def record_history(object_name: str, record_id: int) -> Any:
    return jsonify({"items": records().history(object_name, record_id)})


@bp.get("/openapi.json")
def openapi() -> Any:
    who = caller()
    return jsonify(openapi_document(registry(), request.host_url.rstrip("/"), who.permissions))


# --- identity ----------------------------------------------------------------------------


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


# --- roles (administrators only) ----------------------------------------------------------


def _roles() -> RoleService:
    return RoleService(g.session, registry(), caller().user_id)


@bp.get("/roles")
def list_roles() -> Any:
    require_admin()
    documents = registry().role_documents()
    return jsonify({"items": [documents[name] for name in sorted(documents)]})


@bp.post("/roles")
def create_role() -> Any:
    require_admin()
    document, version = _roles().create(json_body())
    record_event("role.created", f"role/{document['x-name']}", {"version": version})
    commit()
    return jsonify({"name": document["x-name"], "version": version, "role": document}), 201


@bp.get("/roles/<name>")
def get_role(name: str) -> Any:
    require_admin()
    service = _roles()
    versions = service.versions(name)
    return jsonify({"name": name, "version": versions[0].version, "role": versions[0].document})


@bp.put("/roles/<name>")
def update_role(name: str) -> Any:
    require_admin()
    document, version, changed = _roles().update(name, json_body())
    if changed:
        record_event("role.updated", f"role/{name}", {"version": version})
    commit()
    return jsonify({"name": name, "version": version, "role": document, "changed": changed})


@bp.get("/roles/<name>/versions")
def list_role_versions(name: str) -> Any:
    require_admin()
    items = [
        {
            "version": row.version,
            "author_id": row.author_id,
            "created_at": _when(row.created_at),
            "role": row.document,
        }
        for row in _roles().versions(name)
    ]
    return jsonify({"items": items})


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


def init_app(app: Flask) -> None:
    app.extensions["trellis.registry"] = MetaRegistry()
    app.register_blueprint(bp)

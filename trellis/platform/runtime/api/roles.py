"""Roles (administrators only)."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify

from trellis.platform.runtime.api import (
    bp,
    caller,
    commit,
    json_body,
    record_event,
    registry,
    require_admin,
    when,
)
from trellis.platform.runtime.identity import RoleService


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
            "created_at": when(row.created_at),
            "role": row.document,
        }
        for row in _roles().versions(name)
    ]
    return jsonify({"items": items})

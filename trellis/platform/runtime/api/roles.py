"""Roles (administrators only). A role document is checked by the role service against the
role meta-schema; the envelope around it is dumped through ``api.schemas``."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify

from trellis.platform.runtime.api import (
    audit_context,
    bp,
    caller,
    commit,
    json_body,
    registry,
    require_admin,
)
from trellis.platform.runtime.api.schemas import (
    RoleChangeSchema,
    RolePageSchema,
    RoleSchema,
    RoleVersionPageSchema,
)
from trellis.platform.runtime.identity import RoleService
from trellis.platform.runtime.versioning import Saved

ROLE, ROLE_CHANGE, ROLES, ROLE_VERSIONS = (
    RoleSchema(),
    RoleChangeSchema(),
    RolePageSchema(),
    RoleVersionPageSchema(),
)


def _roles() -> RoleService:
    return RoleService(g.session, registry(), caller().user_id, audit_context())


@bp.get("/roles")
def list_roles() -> Any:
    """``GET /roles``: every current role document, by name (administrators only, else 403)."""
    require_admin()
    documents = registry().role_documents()
    return jsonify(ROLES.dump({"items": [documents[name] for name in sorted(documents)]}))


def _role_out(saved: Saved) -> dict[str, Any]:
    return {"name": saved.name, "version": saved.version, "role": saved.document}


@bp.post("/roles")
def create_role() -> Any:
    """``POST /roles``: create a role as version 1 (201); 403, 422 naming every problem, 409
    when the name exists.
    """
    require_admin()
    saved = _roles().create(json_body())
    commit()
    return jsonify(ROLE.dump(_role_out(saved))), 201


@bp.get("/roles/<name>")
def get_role(name: str) -> Any:
    """``GET /roles/<name>``: the current role document and its version; 403, or 404."""
    require_admin()
    latest = _roles().versions(name)[0]
    return jsonify(ROLE.dump({"name": name, "version": latest.version, "role": latest.document}))


@bp.put("/roles/<name>")
def update_role(name: str) -> Any:
    """``PUT /roles/<name>``: a new version (``changed`` false when identical, nothing written);
    403, 404, 422 for an invalid role or a changed ``x-name``.
    """
    require_admin()
    saved = _roles().update(name, json_body())
    commit()
    return jsonify(ROLE_CHANGE.dump({**_role_out(saved), "changed": saved.created}))


@bp.get("/roles/<name>/versions")
def list_role_versions(name: str) -> Any:
    """``GET /roles/<name>/versions``: every version with its diff, newest first; 403, or 404."""
    require_admin()
    return jsonify(ROLE_VERSIONS.dump({"items": _roles().versions(name)}))


@bp.post("/roles/<name>/versions/<int:version>/restore")
def restore_role_version(name: str, version: int) -> Any:
    """``POST /roles/<name>/versions/<n>/restore``: make version ``n`` current again, as a new
    version; 403, or 404 for an unknown role or version.
    """
    require_admin()
    saved = _roles().restore(name, version)
    commit()
    return jsonify(ROLE.dump(_role_out(saved)))

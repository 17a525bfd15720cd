"""Object definitions, their versions and restores (administrators only)."""

from __future__ import annotations

from typing import Any

from flask import jsonify

from trellis.platform.runtime.api import (
    bp,
    commit,
    json_body,
    object_service,
    registry,
    require_admin,
    when,
)


def _definition_out(name: str, version: int, document: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "version": version, "definition": document}


@bp.get("/objects")
def list_objects() -> Any:
    """``GET /objects``: name, label, current version and field count of every object,
    by name (administrators only, else 403).
    """
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
    """``POST /objects``: create an object and its table (201); 403 for a non-administrator,
    422 naming every problem of the definition, 409 when the name exists.
    """
    require_admin()
    result = object_service().create(json_body())
    commit()
    return jsonify(_definition_out(result.name, result.version, result.document)), 201


@bp.get("/objects/<name>")
def get_object(name: str) -> Any:
    """``GET /objects/<name>``: the current definition and its version; 403, or 404."""
    require_admin()
    meta = registry().get(name)
    return jsonify(_definition_out(meta.name, meta.version, meta.definition.document))


@bp.put("/objects/<name>")
def update_object(name: str) -> Any:
    """``PUT /objects/<name>``: a new version (``changed`` false when identical, nothing
    written); 403, 404, 400 for a changed ``x-name``, 422 for an invalid definition or one
    the stored data cannot survive.
    """
    require_admin()
    result = object_service().update(name, json_body())
    commit()
    body = _definition_out(result.name, result.version, result.document)
    body["changed"] = result.created
    return jsonify(body)


@bp.delete("/objects/<name>")
def delete_object(name: str) -> Any:
    """``DELETE /objects/<name>``: drop the object, its table and its versions; 403, 404,
    or 409 naming what still depends on it.
    """
    require_admin()
    version = object_service().delete(name)
    commit()
    return jsonify({"name": name, "deleted": True, "version": version})


@bp.get("/objects/<name>/versions")
def list_versions(name: str) -> Any:
    """``GET /objects/<name>/versions``: every version with its diff and summary, newest
    first; 403, or 404.
    """
    require_admin()
    items = [
        {
            "version": row.version,
            "author_id": row.author_id,
            "created_at": when(row.created_at),
            "summary": row.summary,
            "diff": row.diff,
            "restored_from": row.restored_from,
        }
        for row in object_service().versions(name)
    ]
    return jsonify({"items": items})


@bp.get("/objects/<name>/versions/<int:version>")
def get_version(name: str, version: int) -> Any:
    """``GET /objects/<name>/versions/<n>``: the definition as one version stored it; 403,
    or 404 for an unknown object or version.
    """
    require_admin()
    return jsonify(_definition_out(name, version, object_service().version_document(name, version)))


@bp.post("/objects/<name>/versions/<int:version>/restore")
def restore_version(name: str, version: int) -> Any:
    """``POST /objects/<name>/versions/<n>/restore``: make version ``n`` current again, as a
    new version; 403, 404, or 422 when today's data cannot take it.
    """
    require_admin()
    result = object_service().restore(name, version)
    commit()
    return jsonify(_definition_out(result.name, result.version, result.document))

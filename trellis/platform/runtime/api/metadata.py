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
    result = object_service().create(json_body())
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
    result = object_service().update(name, json_body())
    commit()
    body = _definition_out(result.name, result.version, result.document)
    body["changed"] = result.created
    return jsonify(body)


@bp.delete("/objects/<name>")
def delete_object(name: str) -> Any:
    require_admin()
    version = object_service().delete(name)
    commit()
    return jsonify({"name": name, "deleted": True, "version": version})


@bp.get("/objects/<name>/versions")
def list_versions(name: str) -> Any:
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
    require_admin()
    return jsonify(_definition_out(name, version, object_service().version_document(name, version)))


@bp.post("/objects/<name>/versions/<int:version>/restore")
def restore_version(name: str, version: int) -> Any:
    require_admin()
    result = object_service().restore(name, version)
    commit()
    return jsonify(_definition_out(result.name, result.version, result.document))
